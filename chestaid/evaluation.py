"""Calibrating and evaluating a bundle on a data folder: the work behind the command line.

Both steps find their cases the same way: when the data folder is the one the bundle
was developed on (its split's fingerprints match), the bundle's own patient-level
split is used (calibration split to fit, report split to judge); otherwise the folder
is treated as new cases (a new site's, for instance), split by patient into
calibration and report halves for calibrating, or used whole for evaluating. A folder
that holds as many images of each class as the development data, without the split that
would keep its training images out, is refused rather than taken for new cases.
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from chestaid.bundle import Bundle, load_bundle, read_manifest, read_splits, update_manifest
from chestaid.calibration import Calibrator, IdentityCalibration, fit_and_select
from chestaid.data import Example, discover, fingerprint, split_by_patient, splits_from_json
from chestaid.errors import ConfigurationError, DatasetError
from chestaid.metrics import (
    adaptive_ece,
    bootstrap_ci,
    brier,
    confusion_at,
    ece,
    nll,
    pr_auc,
    reliability_curve,
    roc_auc,
    threshold_table,
    wilson_interval,
)
from chestaid.threshold import governed_threshold
from chestaid.training.dataset import ImageDataset, collect_logits

if TYPE_CHECKING:  # the N-class modules import this one
    from chestaid.calibration_multiclass import MultiClassCalibrationOutcome

logger = logging.getLogger(__name__)

DEFAULT_TARGET_SENSITIVITY = 0.90
THRESHOLD_GRID = tuple(round(t, 2) for t in np.arange(0.05, 0.96, 0.05))
DECODE_MAX_SIDE = 512  # longest side of cases held decoded in memory


@dataclass(frozen=True)
class CaseSet:
    """Cases to calibrate or evaluate on, and where they came from."""

    base: Path
    parts: dict[str, list[Example]]
    source: str  # "bundle split" or "new cases"


def select_cases(bundle: Bundle, data_dir: str | os.PathLike[str], *, seed: int = 0) -> CaseSet:
    """The bundle's own split when ``data_dir`` is its development data, else new cases.

    New cases are split by patient into ``calibration`` and ``report`` halves and
    also offered whole as ``all``.
    """
    base, examples = discover(data_dir, classes=bundle.manifest.classes)
    stored = read_splits(bundle.path)
    known = bundle.manifest.data_fingerprint.get("splits", {})
    if stored is not None:
        parts = splits_from_json(stored)
        wanted = [n for n in ("calibration", "report") if n in parts]
        present = {e.relpath for e in examples}
        if (
            wanted
            and all(e.relpath in present for n in wanted for e in parts[n])
            and all(fingerprint(base, parts[n]) == known.get(n) for n in wanted)
        ):
            return CaseSet(base=base, parts=parts, source="bundle split")
    if _development_counts(bundle) == Counter(bundle.manifest.classes[e.label] for e in examples):
        why = (
            "stores no splits.json"
            if stored is None
            else "has a splits.json that does not match it"
        )
        raise DatasetError(
            f"{base} holds as many images of each class as the data {bundle.path} was developed on,"
            f" but the bundle {why}: its training images would be taken for new cases. Put the"
            " splits.json written with the weights beside them, or give a folder of cases the model"
            " has not seen"
        )
    halves = split_by_patient(examples, fractions={"calibration": 0.5, "report": 0.5}, seed=seed)
    halves["all"] = sorted(examples, key=lambda e: e.relpath)
    return CaseSet(base=base, parts=halves, source="new cases")


def _development_counts(bundle: Bundle) -> Counter[str] | None:
    """Images of each class over every part of the bundle's development data, if recorded."""
    counts = bundle.manifest.data_fingerprint.get("counts")
    if not isinstance(counts, dict) or not counts:
        return None
    total: Counter[str] = Counter()
    for part in counts.values():
        if isinstance(part, dict):
            total.update({str(k): int(v) for k, v in part.items()})
    return total


def cases_to_evaluate(
    bundle: Bundle, data_dir: str | os.PathLike[str], *, split: str = "auto", seed: int = 0
) -> tuple[CaseSet, str]:
    """The cases of ``data_dir`` and the name of the part an evaluation judges.

    ``split`` "auto" is the bundle's report split on its own data, else every image
    ("all"); any other value names a part.

    Raises:
        DatasetError: the data folder is unusable or has no such part.
    """
    cases = select_cases(bundle, data_dir, seed=seed)
    name = ("report" if cases.source == "bundle split" else "all") if split == "auto" else split
    if name not in cases.parts:
        raise DatasetError(
            f"no split {name!r} for these cases ({cases.source}); have {', '.join(cases.parts)}"
        )
    return cases, name


LOGIT_QUANTILES = (0.0, 0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99, 1.0)


def fitted_on_record(
    bundle: Bundle, cases: CaseSet, n_calibration: int, n_report: int
) -> dict[str, Any]:
    """What a calibration was fitted on, for the manifest: the cases (by fingerprint), how
    many were read, and the calibration's version (one more than the bundle's last)."""
    previous = bundle.manifest.calibration or {}
    return {
        "fitted_on": cases.source,
        "cases_fingerprint": {
            name: fingerprint(cases.base, cases.parts[name]) for name in ("calibration", "report")
        },
        "n_calibration": n_calibration,
        "n_report": n_report,
        "calibration_version": int(previous.get("calibration_version", 0)) + 1,
    }


def logit_distribution(logits: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """Per class: quantiles of the logit and the share beyond +-5 and +-10.

    Shows whether training pushed the logits to saturation, where a calibrated score
    stops ordering cases (every one reads 1.000) and a small shift flips many calls.
    """
    x = np.asarray(logits, dtype=np.float64).reshape(-1)
    y = np.asarray(labels).reshape(-1)
    out: dict[str, Any] = {"quantiles": list(LOGIT_QUANTILES)}
    for name, value in (("normal", 0), ("pneumonia", 1)):
        part = x[y == value]
        if part.size == 0:
            out[name] = None
            continue
        out[name] = {
            "n": int(part.size),
            "values": [float(q) for q in np.quantile(part, LOGIT_QUANTILES)],
            "beyond_5": float(np.mean(np.abs(part) > 5.0)),
            "beyond_10": float(np.mean(np.abs(part) > 10.0)),
        }
    return out


def logits_for(
    bundle: Bundle, base: Path, examples: Sequence[Example], *, batch_size: int = 32
) -> tuple[np.ndarray, np.ndarray]:
    """Logits and labels of ``examples`` through the bundle's model and preprocessing."""
    dataset = ImageDataset(base, examples, bundle.manifest.preprocessing)
    return collect_logits(bundle.model, dataset, batch_size=batch_size), dataset.labels


def decode_examples(
    base: Path, examples: Sequence[Example], *, max_side: int = DECODE_MAX_SIDE
) -> list[np.ndarray]:
    """Decode each case once (grey, [0, 1]); larger images are reduced to ``max_side``.

    The cap keeps a folder of full-size radiographs in memory; the corruptions then
    act on the reduced image (the development images are smaller than the cap).
    """
    from chestaid.corruptions import resize
    from chestaid.imaging import read_image

    images = []
    for example in examples:
        pixels = read_image(base / example.relpath).pixels
        h, w = pixels.shape
        if max(h, w) > max_side:
            scale = max_side / max(h, w)
            pixels = resize(pixels, (max(1, round(h * scale)), max(1, round(w * scale))))
        images.append(np.asarray(pixels, dtype=np.float32))
    return images


@dataclass(frozen=True)
class CalibrationOutcome:
    """What :func:`calibrate_bundle` fitted and measured."""

    chosen: str
    comparison: dict[str, Any]
    threshold: dict[str, Any]
    report_at_threshold: dict[str, Any]
    source: str


def calibrate_bundle(
    bundle_path: str | os.PathLike[str],
    data_dir: str | os.PathLike[str],
    *,
    target_sensitivity: float = DEFAULT_TARGET_SENSITIVITY,
    candidates: Sequence[str] = ("temperature", "platt", "isotonic"),
    batch_size: int = 32,
    seed: int = 0,
    out_dir: str | os.PathLike[str] | None = None,
) -> CalibrationOutcome | MultiClassCalibrationOutcome:
    """Fit temperature, Platt and isotonic calibration, keep the best, set the threshold.

    An N-class bundle (one logit a class) is calibrated by
    :func:`chestaid.calibration_multiclass.calibrate_multiclass_bundle` instead
    (``candidates`` are the binary calibrators and do not apply to it).

    Each calibrator is fitted on the calibration cases and measured on the report
    cases; the rule of :func:`chestaid.calibration.fit_and_select` keeps one (the lowest
    ECE, unless a simpler calibrator is within bootstrap noise of it). The governed
    threshold is the rule of :func:`chestaid.threshold.governed_threshold` on the
    calibrated scores of the calibration cases (the most specific threshold reaching
    ``target_sensitivity``, ties to the lower), with its intervals. The
    bundle's manifest is rewritten with both; the weights are untouched. With
    ``out_dir``, the comparison is also written there as ``calibration.json`` and a
    reliability diagram of every candidate on the report cases (``reliability.png``).

    Raises:
        DatasetError: the data folder is unusable.
        CalibrationError: too few cases of a class to fit.
    """
    if read_manifest(bundle_path).num_outputs > 1:
        from chestaid.calibration_multiclass import calibrate_multiclass_bundle

        return calibrate_multiclass_bundle(
            bundle_path,
            data_dir,
            target_sensitivity=target_sensitivity,
            batch_size=batch_size,
            seed=seed,
            out_dir=out_dir,
        )
    bundle = load_bundle(bundle_path)
    cases = select_cases(bundle, data_dir, seed=seed)
    cal_logits, cal_labels = logits_for(
        bundle, cases.base, cases.parts["calibration"], batch_size=batch_size
    )
    rep_logits, rep_labels = logits_for(
        bundle, cases.base, cases.parts["report"], batch_size=batch_size
    )
    comparison = fit_and_select(
        cal_logits, cal_labels, rep_logits, rep_labels, candidates=candidates
    )
    chosen: Calibrator = comparison.calibrators[comparison.chosen]
    governed = governed_threshold(chosen.predict_proba(cal_logits), cal_labels, target_sensitivity)
    report_probs = chosen.predict_proba(rep_logits)
    at_threshold = confusion_at(report_probs, rep_labels, governed.threshold).to_dict()
    calibration = {
        "calibrator": chosen.to_dict(),
        "chosen": comparison.chosen,
        "comparison": comparison.to_dict(),
        **fitted_on_record(bundle, cases, len(cal_labels), len(rep_labels)),
    }
    threshold = {**governed.to_dict(), "report_split": at_threshold}
    metrics = {
        **bundle.manifest.metrics,
        "report_ece_uncalibrated": ece(IdentityCalibration().predict_proba(rep_logits), rep_labels),
        "report_ece_calibrated": ece(report_probs, rep_labels),
    }
    update_manifest(
        bundle.path,
        replace(bundle.manifest, calibration=calibration, threshold=threshold, metrics=metrics),
    )
    if out_dir is not None:
        _write_calibration_report(
            Path(out_dir),
            {"calibration": calibration, "threshold": threshold, "metrics": metrics},
            {"uncalibrated": IdentityCalibration(), **comparison.calibrators},
            rep_logits,
            rep_labels,
        )
    logger.info(
        "calibrated %s with %s (threshold %r for sensitivity %.2f)",
        bundle.path,
        comparison.chosen,
        governed.threshold,
        target_sensitivity,
    )
    return CalibrationOutcome(
        chosen=comparison.chosen,
        comparison=comparison.to_dict(),
        threshold=threshold,
        report_at_threshold=at_threshold,
        source=cases.source,
    )


def _write_calibration_report(
    out: Path,
    record: dict[str, Any],
    calibrators: dict[str, Calibrator],
    logits: np.ndarray,
    labels: np.ndarray,
) -> None:
    from chestaid import plots

    out.mkdir(parents=True, exist_ok=True)
    (out / "calibration.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    plots.plot_reliability(
        {
            name: reliability_curve(c.predict_proba(logits), labels)
            for name, c in calibrators.items()
        },
        out / "reliability.png",
        title="Reliability on the report cases",
    )


def evaluate_bundle(
    bundle_path: str | os.PathLike[str],
    data_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    split: str = "auto",
    saliency: bool = False,
    saliency_cases: int = 64,
    n_boot: int = 1000,
    batch_size: int = 32,
    seed: int = 0,
) -> dict[str, Any]:
    """Measure a bundle on a data folder; writes ``metrics.json`` and PNG plots to ``out_dir``.

    Args:
        split: "auto" (the bundle's report split on its own data, else every image),
            "all", or a split name ("report", "calibration", "validation", "train").
        saliency: also run the deletion/keep and randomisation evaluation of Grad-CAM.
        saliency_cases: how many positive cases the saliency evaluation uses.
        n_boot: bootstrap resamples for the 95% intervals.

    Returns:
        The metrics written to ``metrics.json``. When they are of the bundle's own
        report split, the headline figures are also recorded in its manifest. An N-class
        bundle is measured by
        :func:`chestaid.evaluation_multiclass.evaluate_multiclass_bundle` instead.

    Raises:
        ConfigurationError: ``saliency`` asked of an N-class bundle (its evaluation draws
            a Grad-CAM panel of every class instead).
    """
    from chestaid import plots

    if read_manifest(bundle_path).num_outputs > 1:
        from chestaid.evaluation_multiclass import evaluate_multiclass_bundle

        if saliency:
            raise ConfigurationError(
                "the saliency evaluation is of binary bundles; an N-class evaluation "
                "draws a Grad-CAM panel of every class instead"
            )
        return evaluate_multiclass_bundle(
            bundle_path,
            data_dir,
            out_dir,
            split=split,
            n_boot=n_boot,
            batch_size=batch_size,
            seed=seed,
        )

    bundle = load_bundle(bundle_path)
    cases, name = cases_to_evaluate(bundle, data_dir, split=split, seed=seed)
    examples = cases.parts[name]
    logits, labels = logits_for(bundle, cases.base, examples, batch_size=batch_size)
    probs = bundle.calibrator.predict_proba(logits)
    raw = IdentityCalibration().predict_proba(logits)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    # Intervals resample patients, not images: a patient's images are not independent.
    patients = [e.patient for e in examples]
    auc = bootstrap_ci(roc_auc, probs, labels, n_boot=n_boot, seed=seed, clusters=patients)
    ap = bootstrap_ci(pr_auc, probs, labels, n_boot=n_boot, seed=seed, clusters=patients)
    logit_auc = bootstrap_ci(roc_auc, logits, labels, n_boot=n_boot, seed=seed, clusters=patients)
    threshold = bundle.threshold
    governed = threshold is not None
    t = threshold if threshold is not None else 0.5
    cm = confusion_at(probs, labels, t)
    # The threshold itself, not a rounding of it: a saturated threshold rounded to six
    # decimals is 1.0, and its row would describe a different operating point.
    grid = sorted({*THRESHOLD_GRID, t})
    result: dict[str, Any] = {
        "bundle": {
            "version": bundle.manifest.version,
            "architecture": bundle.manifest.architecture,
        },
        "cases": {
            "source": cases.source,
            "split": name,
            "n": len(labels),
            "patients": len(set(patients)),
            "positives": int(labels.sum()),
            "negatives": int(len(labels) - labels.sum()),
        },
        "calibrator": bundle.calibrator.name,
        "roc_auc": {"value": auc[0], "ci95": [auc[1], auc[2]]},
        # The model's own discrimination: a step-wise calibrator (isotonic) ties scores
        # and can lower the AUC of the calibrated score below it.
        "roc_auc_logit": {"value": logit_auc[0], "ci95": [logit_auc[1], logit_auc[2]]},
        "bootstrap": {"resamples": n_boot, "unit": "patient", "stratified_by_class": True},
        "pr_auc": {"value": ap[0], "ci95": [ap[1], ap[2]]},
        "brier": brier(probs, labels),
        "nll": nll(probs, labels),
        "ece": ece(probs, labels),
        "adaptive_ece": adaptive_ece(probs, labels),
        "uncalibrated": {
            "brier": brier(raw, labels),
            "ece": ece(raw, labels),
            "adaptive_ece": adaptive_ece(raw, labels),
            "nll": nll(raw, labels),
        },
        "threshold": {
            "value": t,
            "governed": governed,
            "target_sensitivity": (bundle.manifest.threshold or {}).get("target_sensitivity"),
            "confusion": cm.to_dict(),
            "sensitivity_ci95": list(wilson_interval(cm.tp, cm.tp + cm.fn)),
            "specificity_ci95": list(wilson_interval(cm.tn, cm.tn + cm.fp)),
        },
        "threshold_table": threshold_table(probs, labels, grid),
        "logit_distribution": logit_distribution(logits, labels),
    }
    plots.plot_roc(probs, labels, out / "roc.png", auc_ci=auc)
    plots.plot_pr(probs, labels, out / "pr.png", ap_ci=ap)
    plots.plot_reliability(
        {
            f"calibrated ({bundle.calibrator.name})": reliability_curve(probs, labels),
            "uncalibrated": reliability_curve(raw, labels),
        },
        out / "reliability.png",
    )
    plots.plot_score_histograms(probs, labels, out / "score_histograms.png", threshold=t)
    plots.plot_confusion(cm, out / "confusion.png", threshold=t)
    if saliency:
        result["saliency"] = saliency_report(
            bundle, cases.base, examples, saliency_cases, seed, batch_size
        )
    (out / "metrics.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    if cases.source == "bundle split" and name == "report":
        _record_report_metrics(bundle, result)
    return result


def _record_report_metrics(bundle: Bundle, result: dict[str, Any]) -> None:
    """Keep the headline figures on the bundle's own report split in its manifest."""
    summary = {
        key: result[key] for key in ("cases", "calibrator", "roc_auc", "pr_auc", "brier", "ece")
    }
    summary["adaptive_ece"] = result["adaptive_ece"]
    summary["uncalibrated_ece"] = result["uncalibrated"]["ece"]
    summary["threshold"] = result["threshold"]
    if "saliency" in result:
        summary["saliency"] = result["saliency"]
    metrics = {**bundle.manifest.metrics, "report_split": summary}
    update_manifest(bundle.path, replace(bundle.manifest, metrics=metrics))


def saliency_report(
    bundle: Bundle,
    base: Path,
    examples: Sequence[Example],
    n_cases: int,
    seed: int,
    batch_size: int,
) -> dict[str, Any]:
    """Grad-CAM faithfulness on up to ``n_cases`` positive cases (seeded choice)."""
    from chestaid.saliency import evaluate_saliency

    positives = [e for e in examples if e.label == 1]
    if not positives:
        raise DatasetError("the saliency evaluation needs positive cases")
    rng = np.random.default_rng(seed)
    chosen = [
        positives[i]
        for i in sorted(rng.choice(len(positives), min(n_cases, len(positives)), replace=False))
    ]
    dataset = ImageDataset(base, chosen, bundle.manifest.preprocessing)
    x = torch.stack([dataset[i][0] for i in range(len(dataset))])
    calibrator = bundle.calibrator

    @torch.inference_mode()
    def logit(batch: torch.Tensor) -> np.ndarray:
        out: np.ndarray = bundle.model(batch)[:, 0].float().numpy().astype(np.float64)
        return out

    def score(batch: torch.Tensor) -> np.ndarray:
        return calibrator.predict_proba(logit(batch))

    report = evaluate_saliency(bundle.model, score, x, seed=seed, batch_size=batch_size)
    # A confident model's probability saturates near 1, flattening every curve; the
    # logit shows what deleting or keeping regions does before the saturation.
    report["on_logit"] = evaluate_saliency(
        bundle.model, logit, x, seed=seed, batch_size=batch_size, randomisation=False
    )
    return report
