"""The audit's markdown report and the figure of the masks it used."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from chestaid.audit.masks import border_band_mask, fill_outside, lung_prior_mask
from chestaid.audit.statements import (
    CLASSIFIER_NOTE,
    FILL_NOTE,
    LUNG_PRIOR_NOTE,
    NO_SOURCE_FREE_SPLIT,
    TEXT_MARK_NOTE,
)
from chestaid.audit.variants import BORDER, OUTSIDE_LUNGS, TEXT, UNMASKED, MaskSettings


def _num(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.0f}%"


def covid_class(classes: list[str]) -> str | None:
    """The class name that stands for COVID-19, if any."""
    return next((c for c in classes if "covid" in c.lower()), None)


def _prior_text(record: Mapping[str, Any]) -> str:
    parts = []
    for side, e in record["lung_prior"].items():
        parts.append(
            f"{side.replace('_', ' ')}: centre ({e['centre_x']:.2f}, {e['centre_y']:.2f}), "
            f"half-axes {e['half_width']:.2f} across x {e['half_height']:.2f} down"
        )
    return (
        "Lung prior, in frame coordinates (0..1 left to right, 0..1 top to bottom): "
        + "; ".join(parts)
        + f". Border band: the outer {record['border_fraction']:.0%} of each side. "
        + LUNG_PRIOR_NOTE
    )


def _source_section(a: Mapping[str, Any]) -> list[str]:
    d = a["detector"]
    lines = [
        "## (a) How well the source can be told from the image",
        "",
        "Images: "
        + ", ".join(f"{k} {v} ({a['patients'][k]} patients)" for k, v in a["images"].items())
        + ".",
        "",
        "| region | share of frame used | ROC-AUC | 95% interval |",
        "|---|---|---|---|",
    ]
    for r in a["regions"]:
        lines.append(
            f"| {r['region'].replace('_', ' ')} | {_pct(r['area_fraction'])} | "
            f"{r['roc_auc']:.3f} | {r['ci95'][0]:.3f} - {r['ci95'][1]:.3f} |"
        )
    lines += [
        "",
        CLASSIFIER_NOTE.format(
            grid=d["grid"],
            bins=d["histogram_bins"],
            c=d["logistic_regression_C"],
            folds=d["folds"],
            n_boot=d["bootstrap"],
            size=a["size"],
        ),
        "",
    ]
    return lines


def _cam_section(m: Mapping[str, Any]) -> list[str]:
    cam = m["cam_outside_lung_prior"]
    lines = [
        "## (b) Grad-CAM mass outside the lung prior",
        "",
        f"Cases: {m['cases']}. Share of the ReLU'd, unnormalised Grad-CAM map lying outside "
        f"the lung prior (the prior averaged onto the feature grid); a map spread evenly "
        f"over the frame would put {_pct(cam['area_outside_lung_prior'])} there.",
        "",
        "| true class | n | maps all zero (predicted / true) | predicted-class map: mean (q25, median, q75) "
        "| true-class map: mean (q25, median, q75) |",
        "|---|---|---|---|---|",
    ]
    for name, entry in cam["by_true_class"].items():
        p, t = entry["predicted_class_cam"], entry["true_class_cam"]
        lines.append(
            f"| {name} | {p['n']} | {p['zero_maps']} / {t['zero_maps']} | "
            f"{_num(p['mean'])} ({_num(p['q25'])}, {_num(p['median'])}, {_num(p['q75'])}) | "
            f"{_num(t['mean'])} ({_num(t['q25'])}, {_num(t['median'])}, {_num(t['q75'])}) |"
        )
    return [*lines, ""]


def _masked_section(m: Mapping[str, Any]) -> list[str]:
    classes = m["classes"]
    header = " | ".join(f"recall {c}" for c in classes)
    lines = [
        "## (c) The model with borders and burned-in text hidden",
        "",
        "| variant | accuracy | macro ROC-AUC | " + header + " | predictions changed |",
        "|---|---|---|" + "---|" * len(classes) + "---|",
    ]
    for variant, entry in m["masked"].items():
        recalls = " | ".join(_num(entry["recall"][c]["recall"]) for c in classes)
        changed = entry.get("changed_vs_unmasked")
        moved = "-" if changed is None else f"{changed['total']} of {entry['n']}"
        lines.append(
            f"| {m['variants'][variant]} | {_num(entry['accuracy'])} | "
            f"{_num(entry['macro_roc_auc'])} | {recalls} | {moved} |"
        )
    marks = ", ".join(
        f"{name} {v['with_marks']} of {v['images']}" for name, v in m["text_marks_found"].items()
    )
    lines += [
        "",
        f"Images where the detector hid something (text, markers, or by mistake bright "
        f"bone edges), by true class: {marks}.",
        "",
        TEXT_MARK_NOTE.format(**m["text_marks"]),
        "",
        FILL_NOTE,
        "",
    ]
    return lines


def conclusion(record: Mapping[str, Any]) -> str:
    """The plain-language paragraph for a model card, from the figures present."""
    sentences = []
    a = record.get("source_detectability")
    if a is not None:
        auc = {r["region"]: r["roc_auc"] for r in a["regions"]}
        whole, lungs, border = auc["whole_image"], auc["lung_fields_masked"], auc["border_only"]
        sentences.append(
            "A simple pixel classifier tells the adult COVID-19 images (one hospital in "
            "Hannover) from the pediatric images (one hospital in Guangzhou) with ROC-AUC "
            f"{whole:.2f} from the whole image, {lungs:.2f} with the lung fields hidden and "
            f"{border:.2f} from the outer border alone."
        )
        outside = max(lungs, border)
        if outside >= 0.9:
            sentences.append(
                "The source is therefore plainly visible outside the lungs, where no disease "
                "is, and a network can learn to recognise it instead of COVID-19."
            )
        elif outside >= 0.7:
            sentences.append(
                "The source is partly visible outside the lungs, where no disease is, and a "
                "network can learn to use it."
            )
        else:
            sentences.append(
                "This simple classifier finds little source signal outside the lungs; that "
                "does not show that a deep network finds none."
            )
    m = record.get("model")
    if m is not None:
        name = covid_class(m["classes"])
        masked = m["masked"]
        if name is not None:
            r = {v: masked[v]["recall"][name]["recall"] for v in masked}
            sentences.append(
                f"On {m['cases']}, the model's {name} recall is {_num(r[UNMASKED], 2)} on the "
                f"images as they are, {_num(r[BORDER], 2)} with the border hidden, "
                f"{_num(r[TEXT], 2)} with burned-in text hidden and {_num(r[OUTSIDE_LUNGS], 2)} "
                "with everything outside the lung prior hidden."
            )
            share = m["cam_outside_lung_prior"]["by_true_class"][name]["predicted_class_cam"]
            sentences.append(
                f"For {name} images, on average {_pct(share['mean'])} of the Grad-CAM map of "
                "the predicted class lies outside the lung prior (an even map would put "
                f"{_pct(m['cam_outside_lung_prior']['area_outside_lung_prior'])} there)."
            )
        border_moved = masked[BORDER]["changed_vs_unmasked"]["total"]
        sentences.append(
            f"Hiding the border changes {border_moved} of {masked[BORDER]['n']} predictions."
        )
    sentences.append(
        "Because every COVID-19 image comes from one adult hospital and no other image does, "
        "none of these figures separates disease from source: they are a lower bound on the "
        "risk that the model detects where an image comes from rather than COVID-19. Its "
        "COVID-19 output must not be relied on for images from other hospitals, or for adults "
        "in general, until it has been tested on COVID-19 and non-COVID-19 radiographs from "
        "the same sites."
    )
    return " ".join(sentences)


def markdown_report(record: Mapping[str, Any]) -> str:
    """The audit as markdown, ending with the conclusion paragraph."""
    lines = [
        "# Source-shortcut audit",
        "",
        "## What these figures can and cannot show",
        "",
        NO_SOURCE_FREE_SPLIT,
        "",
        _prior_text(record),
        "",
        "The masks used are drawn in masks.png.",
        "",
    ]
    if "source_detectability" in record:
        lines += _source_section(record["source_detectability"])
    if "model" in record:
        lines += _cam_section(record["model"]) + _masked_section(record["model"])
    lines += ["## Conclusion", "", conclusion(record), ""]
    return "\n".join(lines)


def write_mask_figure(
    path: str | os.PathLike[str],
    frames: Mapping[str, np.ndarray],
    size: int,
    settings: MaskSettings,
) -> Path:
    """Draw the lung prior and border band on each frame (a plain grey one when none),
    with what part (a) keeps of it: the image with the lung fields hidden, and the border."""
    shown = dict(frames) or {"frame": np.full((size, size), 0.5, dtype=np.float32)}
    fig = Figure(figsize=(9, 3 * len(shown)))
    for row, (name, image) in enumerate(shown.items()):
        h, w = image.shape
        lungs = lung_prior_mask(h, w, settings.lung_prior)
        band = border_band_mask(h, w, settings.border_fraction)
        panels = (
            (image, f"mean image, {name}:\nlung prior (red), border band (yellow)"),
            (fill_outside(image, ~lungs), "lung fields masked"),
            (fill_outside(image, band), "border only"),
        )
        for col, (shown_image, title) in enumerate(panels):
            ax = fig.add_subplot(len(shown), 3, 3 * row + col + 1)
            ax.imshow(shown_image, cmap="gray", vmin=0.0, vmax=1.0)
            if col == 0:
                ax.contour(lungs, levels=[0.5], colors="red", linewidths=1)
                ax.contour(band, levels=[0.5], colors="yellow", linewidths=1)
            ax.set_title(title, fontsize=8)
            ax.set_axis_off()
    out = Path(path)
    FigureCanvasAgg(fig)
    fig.savefig(out, dpi=100, bbox_inches="tight")
    return out
