"""The audit end to end: read the images, compute each part, write the report files."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from chestaid.audit.bundle_cases import at_most_per_class, audit_cases, load_audit_model
from chestaid.audit.cam_share import shares_by_class
from chestaid.audit.detectability import (
    FEATURE_GRID,
    FOLDS,
    HISTOGRAM_BINS,
    REGULARISATION_C,
    source_detectability,
)
from chestaid.audit.masked_metrics import masked_comparison
from chestaid.audit.masks import border_band_mask, lung_prior_mask
from chestaid.audit.model_scoring import AuditModel, score_cases
from chestaid.audit.report import markdown_report, write_mask_figure
from chestaid.audit.sources import (
    ADULT,
    PEDIATRIC,
    SOURCE_NAMES,
    adult_images,
    load_squares,
    pediatric_images,
)
from chestaid.audit.statements import NO_SOURCE_FREE_SPLIT
from chestaid.audit.variants import (
    DEFAULT_MASK_SETTINGS,
    UNMASKED,
    VARIANT_TEXT,
    VARIANTS,
    MaskSettings,
)
from chestaid.errors import ConfigurationError
from chestaid.imaging import read_image

logger = logging.getLogger(__name__)

JSON_NAME = "audit.json"
MARKDOWN_NAME = "audit.md"
FIGURE_NAME = "masks.png"

# The regions of part (a), by name: what each keeps of the frame.
WHOLE = "whole_image"
LUNGS_HIDDEN = "lung_fields_masked"
BORDER_ONLY = "border_only"


def regions(size: int, settings: MaskSettings) -> dict[str, np.ndarray]:
    """The kept area of each region of part (a), at ``size`` x ``size``."""
    return {
        WHOLE: np.ones((size, size), dtype=bool),
        LUNGS_HIDDEN: ~lung_prior_mask(size, size, settings.lung_prior),
        BORDER_ONLY: border_band_mask(size, size, settings.border_fraction),
    }


@dataclass(frozen=True)
class SourceImages:
    """Both sources' images at the working size, with source and patient per image."""

    images: np.ndarray  # (N, S, S) in [0, 1]
    sources: np.ndarray  # (N,) 0 pediatric, 1 adult
    groups: np.ndarray  # (N,) patient keys


def read_sources(
    pediatric_dir: str | os.PathLike[str], adult_dir: str | os.PathLike[str], size: int
) -> SourceImages:
    """Read both sources' images, stretched to ``size`` x ``size``."""
    files = pediatric_images(pediatric_dir) + adult_images(adult_dir)
    logger.info("reading %d images of two sources at %d px", len(files), size)
    return SourceImages(
        load_squares(files, size),
        np.array([f.source for f in files]),
        np.array([f.patient for f in files]),
    )


def source_part(
    data: SourceImages, settings: MaskSettings, *, seed: int, n_boot: int
) -> dict[str, Any]:
    """Part (a): the source's detectability from each region."""
    size = data.images.shape[-1]
    results = []
    for name, keep in regions(size, settings).items():
        logger.info("source detectability: %s", name)
        results.append(
            source_detectability(
                name, data.images, keep, data.sources, data.groups, seed=seed, n_boot=n_boot
            ).to_dict()
        )
    return {
        "images": {SOURCE_NAMES[s]: int(np.sum(data.sources == s)) for s in (PEDIATRIC, ADULT)},
        "patients": {
            SOURCE_NAMES[s]: len(set(data.groups[data.sources == s])) for s in (PEDIATRIC, ADULT)
        },
        "size": size,
        "detector": {
            "grid": FEATURE_GRID,
            "histogram_bins": HISTOGRAM_BINS,
            "logistic_regression_C": REGULARISATION_C,
            "folds": FOLDS,
            "bootstrap": n_boot,
            "seed": seed,
        },
        "regions": results,
    }


def model_part(
    audit_model: AuditModel,
    base: Path,
    cases: list[tuple[str, int]],
    settings: MaskSettings,
    *,
    batch_size: int,
) -> dict[str, Any]:
    """Parts (b) and (c): Grad-CAM outside the lung prior, and the masked variants' figures."""
    classes = audit_model.classes
    scored = score_cases(
        audit_model,
        ((read_image(base / rel).pixels, label) for rel, label in cases),
        settings=settings,
        batch_size=batch_size,
    )
    labels = np.array(scored.labels)
    size = audit_model.spec.input_size
    lungs = lung_prior_mask(size, size, settings.lung_prior)
    text_area = np.array(scored.text_area)
    logits = {v: scored.logit_array(v) for v in VARIANTS}
    return {
        "cam_outside_lung_prior": {
            "by_true_class": shares_by_class(
                np.array(scored.predicted_share), np.array(scored.true_share), labels, classes
            ),
            "area_outside_lung_prior": float(1.0 - lungs.mean()),
        },
        "masked": masked_comparison(logits, labels, classes, UNMASKED),
        "variants": dict(VARIANT_TEXT),
        "text_marks_found": {
            name: {
                "images": int(np.sum(labels == k)),
                "with_marks": int(np.sum(text_area[labels == k] > 0)),
                "mean_area": float(text_area[labels == k].mean()) if np.any(labels == k) else None,
            }
            for k, name in enumerate(classes)
        },
    }


def run_audit(
    out: str | os.PathLike[str],
    *,
    pediatric_dir: str | os.PathLike[str] | None = None,
    adult_dir: str | os.PathLike[str] | None = None,
    bundle: str | os.PathLike[str] | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    size: int = 64,
    seed: int = 0,
    n_boot: int = 1000,
    batch_size: int = 16,
    max_per_class: int | None = None,
    settings: MaskSettings = DEFAULT_MASK_SETTINGS,
) -> dict[str, Any]:
    """Run the parts the inputs allow and write ``audit.json``, ``audit.md`` and ``masks.png``.

    Args:
        out: the folder for the report files.
        pediatric_dir, adult_dir: the two sources, for part (a) (both or neither).
        bundle: an N-class bundle, for parts (b) and (c), with ``data_dir``.
        data_dir: the N-class data folder (a folder per class, optional patients.csv).
        size: working size of part (a).
        seed: seeds folds and bootstraps.
        n_boot: bootstrap resamples of part (a).
        batch_size: images per forward pass in parts (b) and (c).
        max_per_class: audit at most this many images of each class (seeded sample).

    Returns:
        The JSON record written.

    Raises:
        ConfigurationError: inputs that make no part runnable, or half of a pair.
        DatasetError, BundleError: unusable data or bundle.
    """
    if (pediatric_dir is None) != (adult_dir is None):
        raise ConfigurationError("the source audit needs both sources (pediatric and adult)")
    if (bundle is None) != (data_dir is None):
        raise ConfigurationError("the model audit needs both a bundle and its data folder")
    if pediatric_dir is None and bundle is None:
        raise ConfigurationError("nothing to audit: give the two sources, or a bundle and data")
    record: dict[str, Any] = {
        "statement": NO_SOURCE_FREE_SPLIT,
        "lung_prior": settings.lung_prior.to_dict(),
        "border_fraction": settings.border_fraction,
        "text_marks": settings.text_marks.to_dict(),
    }
    means: dict[str, np.ndarray] = {}
    if pediatric_dir is not None and adult_dir is not None:
        data = read_sources(pediatric_dir, adult_dir, size)
        record["source_detectability"] = source_part(data, settings, seed=seed, n_boot=n_boot)
        means = {SOURCE_NAMES[s]: data.images[data.sources == s].mean(0) for s in (0, 1)}
    if bundle is not None and data_dir is not None:
        model = load_audit_model(bundle)
        chosen = audit_cases(bundle, data_dir, model.classes)
        if max_per_class is not None:
            chosen = at_most_per_class(chosen, max_per_class, seed=seed)
        part = model_part(
            model,
            chosen.base,
            [(e.relpath, e.label) for e in chosen.examples],
            settings,
            batch_size=batch_size,
        )
        part["cases"] = chosen.source
        part["classes"] = list(model.classes)
        part["text_marks"] = settings.text_marks.to_dict()
        record["model"] = part
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / JSON_NAME).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    (folder / MARKDOWN_NAME).write_text(markdown_report(record), encoding="utf-8")
    write_mask_figure(folder / FIGURE_NAME, means, size, settings)
    return record
