"""``chestaid compare``: several backbones trained and judged under one recipe, side by side.

Each run is one backbone (optionally under a split by image instead of by patient)
trained by :func:`chestaid.training.loop.train` into ``OUT/runs/NAME/`` (resumable:
a run stopped part way resumes from its checkpoint, a finished one is not trained
again), then judged on its report part. The table has the reference system's
columns (loss, accuracy, validation loss and accuracy, test accuracy, epochs) and
more: macro ROC-AUC, expected calibration error after temperature scaling on the
calibration part, F1 per class, inference time per image and parameter count, with
a confusion matrix PNG per run.

Without ImageNet weights here, the reference system's "frozen pretrained backbone"
becomes :data:`LINEAR_HEAD`: a linear head trained on the body of ChestAid's own
pneumonia DenseNet-121, kept frozen.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from chestaid.bundle import default_bundle_path, load_bundle, read_manifest, read_splits
from chestaid.calibration.multiclass import MultiTemperature, softmax
from chestaid.data import splits_from_json
from chestaid.errors import CalibrationError, ConfigurationError
from chestaid.multiclass_metrics import (
    confusion_matrix,
    f1_per_class,
    one_vs_rest_auc,
    top_label_ece,
)
from chestaid.runtimes.cpu import cpu_name
from chestaid.training.config import TrainConfig
from chestaid.training.dataset import ImageDataset, collect_outputs

logger = logging.getLogger(__name__)

LINEAR_HEAD = "densenet121_linear_head"
DEFAULT_BACKBONES = (
    "densenet121",
    LINEAR_HEAD,
    "resnet50",
    "vgg16_bn",
    "inception_v3",
    "xception",
    "efficientnet_b0",
    "small_cnn",
)
RESULT_NAME = "result.json"


@dataclass(frozen=True)
class RunPlan:
    """One row of the comparison: a backbone under a split."""

    backbone: str
    split: str  # "patient" or "image"

    @property
    def name(self) -> str:
        """The run's folder name."""
        return self.backbone if self.split == "patient" else f"{self.backbone}-by-image"

    def config(self, recipe: TrainConfig, *, init_bundle: str | None) -> TrainConfig:
        """The training settings of this run: the shared recipe, this backbone and split."""
        if self.backbone == LINEAR_HEAD:
            return dataclasses.replace(
                recipe,
                architecture="densenet121",
                split=self.split,
                init_from=init_bundle or str(default_bundle_path()),
                freeze_body=True,
            )
        return dataclasses.replace(recipe, architecture=self.backbone, split=self.split)


def plan_runs(backbones: Sequence[str], splits: Sequence[str]) -> list[RunPlan]:
    """Every backbone under every split, in the order given."""
    from chestaid.models import available_architectures

    known = set(available_architectures()) | {LINEAR_HEAD}
    unknown = [b for b in backbones if b not in known]
    if unknown:
        raise ConfigurationError(
            f"unknown backbones {', '.join(unknown)}; known: {', '.join(sorted(known))}"
        )
    bad = [s for s in splits if s not in ("patient", "image")]
    if bad:
        raise ConfigurationError(f"splits must be patient or image, got {', '.join(bad)}")
    return [RunPlan(b, s) for s in splits for b in backbones]


def macro_roc_auc(probs: np.ndarray, labels: np.ndarray) -> float:
    """One-vs-rest ROC-AUC of each class present, averaged."""
    return float(np.nanmean(one_vs_rest_auc(probs, labels)["roc_auc"]))


def as_class_probabilities(
    logits: np.ndarray, calibration_logits: np.ndarray, calibration_labels: np.ndarray
) -> np.ndarray:
    """(n, K) probabilities after temperature scaling fitted on the calibration part.

    One logit (two classes) becomes the pair ``(z0, z1) = (0, z)``, whose softmax is the
    sigmoid, so both kinds of run are scaled and judged alike.
    """

    def pairs(z: np.ndarray) -> np.ndarray:
        return np.column_stack([np.zeros(len(z)), z[:, 0]]) if z.shape[1] == 1 else z

    z, cal = pairs(logits), pairs(calibration_logits)
    if z.shape[1] == 2:  # the multi-class calibrators need three classes; fit T directly
        from chestaid.calibration import TemperatureScaling

        t = TemperatureScaling().fit(cal[:, 1], calibration_labels).temperature
        return softmax(z / t)
    return MultiTemperature().fit(cal, calibration_labels).predict_proba(z)


def inference_ms(model: torch.nn.Module, input_size: int, *, repeats: int = 20) -> float:
    """Median milliseconds of one forward pass of one image (PyTorch eager float32)."""
    x = torch.zeros(1, 1, input_size, input_size)
    model.eval()
    times = []
    with torch.inference_mode():
        for i in range(repeats + 3):
            started = time.perf_counter()
            model(x)
            if i >= 3:  # the first passes pay for allocation and kernel choice
                times.append((time.perf_counter() - started) * 1000.0)
    return float(np.median(times))


def judge_run(bundle_dir: Path, data_dir: Path) -> dict[str, Any]:
    """The figures of one trained run on its report part (and the timing on this CPU)."""
    from chestaid.plots_multiclass import plot_confusion_matrix

    bundle = load_bundle(bundle_dir)
    manifest = bundle.manifest
    stored = read_splits(bundle_dir)
    if stored is None:
        raise ConfigurationError(f"{bundle_dir} has no splits.json to judge it on")
    parts = splits_from_json(stored)
    spec = manifest.preprocessing
    outputs = {}
    for name in ("calibration", "report"):
        data = ImageDataset(data_dir, parts[name], spec, cache=False)
        outputs[name] = (collect_outputs(bundle.model, data, batch_size=64), data.labels)
    try:
        probs = as_class_probabilities(outputs["report"][0], *outputs["calibration"])
        scaled = True
    except CalibrationError as exc:  # a calibration part too small to fit a temperature
        logger.warning("%s: ECE of the raw softmax: %s", bundle_dir.name, exc)
        raw = outputs["report"][0]
        probs = softmax(
            np.column_stack([np.zeros(len(raw)), raw[:, 0]]) if raw.shape[1] == 1 else raw
        )
        scaled = False
    labels = outputs["report"][1]
    k = len(manifest.classes)
    predicted = probs.argmax(axis=1)
    matrix = confusion_matrix(labels, predicted, k)
    plot_confusion_matrix(
        matrix, manifest.classes, bundle_dir / "confusion.png", title=bundle_dir.name
    )
    history = manifest.training.get("history", [])
    best = int(manifest.metrics.get("best_epoch", len(history)))
    chosen = history[best - 1] if 0 < best <= len(history) else {}
    last = history[-1] if history else {}
    return {
        "run": bundle_dir.name,
        "architecture": manifest.architecture,
        "classes": list(manifest.classes),
        "input_size": spec.input_size,
        "split": manifest.training.get("config", {}).get("split", "patient"),
        "epochs": len(history),
        "best_epoch": best,
        # On the run's own cores (CPU time over threads) where recorded, else wall time.
        "train_minutes": sum(h.get("core_seconds") or h.get("seconds", 0.0) for h in history)
        / 60.0,
        "loss": last.get("train_loss"),
        "accuracy": last.get("train_accuracy"),
        "val_loss": chosen.get("val_loss"),
        "val_accuracy": chosen.get("val_accuracy"),
        "test_accuracy": float(np.mean(predicted == labels)),
        "macro_roc_auc": macro_roc_auc(probs, labels),
        "ece": top_label_ece(probs, labels),
        "temperature_scaled": scaled,
        "f1": dict(zip(manifest.classes, (float(f) for f in f1_per_class(matrix)), strict=True)),
        "confusion": matrix.tolist(),
        "report_images": len(labels),
        "inference_ms": inference_ms(bundle.model, spec.input_size),
        "parameters": sum(p.numel() for p in bundle.model.parameters()),
        "cpu": cpu_name(),
        "train_precision": manifest.training.get("precision"),
        "train_processor": manifest.training.get("processor"),
        "threads": torch.get_num_threads(),
    }


def run_comparison(
    data_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    recipe: TrainConfig,
    plans: Sequence[RunPlan],
    *,
    patient_csv: str | os.PathLike[str] | None = None,
    init_bundle: str | None = None,
    progress: bool = False,
    rejudge: bool = False,
) -> list[dict[str, Any]]:
    """Train (or resume) and judge every planned run; writes the table after each run.

    A run with a result is neither trained nor judged again unless ``rejudge`` (which
    judges again without training, e.g. to time inference on an idle machine).
    """
    from chestaid.training.loop import train

    out = Path(out_dir)
    (out / "runs").mkdir(parents=True, exist_ok=True)
    results: list[dict[str, Any]] = []
    for plan in plans:
        run_dir = out / "runs" / plan.name
        result_path = run_dir / RESULT_NAME
        if result_path.is_file() and not rejudge:
            results.append(json.loads(result_path.read_text(encoding="utf-8")))
            continue
        if not _trained(run_dir):
            logger.info("training %s", plan.name)
            train(
                data_dir,
                run_dir,
                plan.config(recipe, init_bundle=init_bundle),
                patient_csv=patient_csv,
                version=f"compare-{plan.name}",
                progress=progress,
            )
        result = judge_run(run_dir, _class_root(data_dir, recipe.classes))
        result["run"] = plan.name
        result["backbone"] = plan.backbone
        result_path.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        results.append(result)
        write_table(out, results, recipe)
    write_table(out, results, recipe)
    return results


def _trained(run_dir: Path) -> bool:
    """A finished run: a bundle manifest and no checkpoint left to resume."""
    from chestaid.training.checkpoint import checkpoint_path

    if not (run_dir / "manifest.json").is_file() or checkpoint_path(run_dir).exists():
        return False
    read_manifest(run_dir)  # a garbled manifest fails here, not half way through judging
    return True


def _class_root(data_dir: str | os.PathLike[str], classes: Sequence[str]) -> Path:
    from chestaid.data import find_class_root

    return find_class_root(Path(data_dir), classes)


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _named(results: Sequence[dict[str, Any]], key: str) -> str:
    """The runs' values of ``key``, each once ('not recorded' for runs that lack it)."""
    values = dict.fromkeys(str(r.get(key) or "not recorded") for r in results)
    return " / ".join(values) if values else "not recorded"


def write_table(out: Path, results: Sequence[dict[str, Any]], recipe: TrainConfig) -> Path:
    """``comparison.md`` and ``comparison.json`` from the results so far."""
    classes = list(results[0]["classes"]) if results else list(recipe.classes)
    head = (
        "| run | split | loss | accuracy | val loss | val accuracy | test accuracy | epochs "
        "| macro ROC-AUC | ECE | "
        + " | ".join(f"F1 {c}" for c in classes)
        + " | inference ms | parameters (M) | train min |"
    )
    rows = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in results:
        rows.append(
            f"| {r['run']} | {r['split']} | {_fmt(r['loss'])} | {_fmt(r['accuracy'])} "
            f"| {_fmt(r['val_loss'])} | {_fmt(r['val_accuracy'])} | {_fmt(r['test_accuracy'])} "
            f"| {r['epochs']} | {_fmt(r['macro_roc_auc'])} | {_fmt(r['ece'])}"
            + ("" if r.get("temperature_scaled", True) else " (raw)")
            + " | "
            + " | ".join(_fmt(r["f1"].get(c)) for c in classes)
            + f" | {_fmt(r['inference_ms'], 1)} | {r['parameters'] / 1e6:.1f} "
            f"| {_fmt(r['train_minutes'], 1)} |"
        )
    text = "\n".join(
        [
            "# Backbone comparison",
            "",
            f"Classes: {', '.join(classes)}. Input {recipe.input_size} px, one grey channel; "
            f"at most {recipe.epochs} epochs"
            + (f" or {recipe.max_minutes:g} minutes" if recipe.max_minutes else "")
            + f" per run, batch {recipe.batch_size}, AdamW lr {recipe.learning_rate:g}, "
            f"seed {recipe.seed}. Every network starts from random weights except "
            f"`{LINEAR_HEAD}`, a linear head trained on the frozen body of ChestAid's own "
            "pneumonia DenseNet-121 (no ImageNet weights on this network: this row stands "
            "for the reference system's frozen backbones, and the other rows for its "
            "fine-tuned ones, trained here from scratch).",
            "",
            "Loss and accuracy are the last epoch's on the training batches (augmented and "
            "class-balanced); validation figures are the kept epoch's; test figures are on "
            "the report part, which the runs never saw. ECE is of the top class after "
            "temperature scaling fitted on the calibration part ('raw' where that part was too small to "
            "fit one). Inference is one image, "
            f"PyTorch eager float32, median of 20 passes on {_named(results, 'cpu')}. "
            f"Training ran in {_named(results, 'train_precision')} on "
            f"{_named(results, 'train_processor')}. A split 'image' deals images, not patients, to the parts, as "
            "the reference system did; 'patient' keeps each patient in one part. "
            "'train min' is the run's time on its own cores (CPU time over threads), which "
            "the time budget counts, so other work on the machine does not shorten a run.",
            "",
            *rows,
            "",
        ]
    )
    (out / "comparison.md").write_text(text, encoding="utf-8")
    (out / "comparison.json").write_text(
        json.dumps({"recipe": recipe.to_dict(), "runs": list(results)}, indent=2, default=str)
        + "\n",
        encoding="utf-8",
    )
    return out / "comparison.md"
