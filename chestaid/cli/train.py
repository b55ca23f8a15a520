"""``chestaid train``: a model bundle from a folder-per-class data set."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from chestaid.cli.common import EXIT_OK, positive_int

if TYPE_CHECKING:
    from chestaid.training.config import TrainConfig


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``train`` and its options."""
    t = sub.add_parser("train", help="train a model on a folder-per-class data set")
    t.add_argument(
        "data_dir",
        type=Path,
        help="folder with a sub-folder per class (NORMAL/ and PNEUMONIA/ by default), "
        "or train/ holding them",
    )
    t.add_argument(
        "--out", type=Path, required=True, help="bundle folder to write (resumes if interrupted)"
    )
    t.add_argument(
        "--arch",
        default="densenet121",
        help="backbone: " + ", ".join(_architectures()),
    )
    t.add_argument(
        "--init-from",
        type=Path,
        help="a bundle of the same architecture whose body weights start the run",
    )
    t.add_argument(
        "--freeze-body", action="store_true", help="train only the linear head on a frozen body"
    )
    add_recipe_options(t, input_size=224, epochs=30)
    t.add_argument("--model-version", help="version string recorded in the bundle")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")


def _architectures() -> list[str]:
    from chestaid.models import available_architectures

    return available_architectures()


def add_recipe_options(t: argparse.ArgumentParser, *, input_size: int, epochs: int) -> None:
    """The options of a training recipe, shared by ``train`` and ``compare``."""
    t.add_argument(
        "--classes",
        type=class_list,
        help="class folders, comma-separated, the normal class among them (default: the "
        "layout.json of a 'chestaid dataset' folder, else NORMAL,PNEUMONIA)",
    )
    t.add_argument(
        "--split",
        choices=["patient", "image"],
        default="patient",
        help="deal patients (default) or single images to train/validation/calibration/report",
    )
    t.add_argument(
        "--max-minutes", type=float, help="stop before an epoch that would pass this training time"
    )
    t.add_argument("--input-size", type=positive_int, default=input_size)
    t.add_argument("--epochs", type=positive_int, default=epochs)
    t.add_argument("--batch-size", type=positive_int, default=32)
    t.add_argument("--lr", type=float, default=1e-3, help="peak AdamW learning rate")
    t.add_argument("--weight-decay", type=float, default=1e-4)
    t.add_argument("--dropout", type=float, default=0.2)
    t.add_argument(
        "--patience",
        type=positive_int,
        default=6,
        help="epochs without a better validation ROC-AUC before stopping",
    )
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--precision", choices=["auto", "bf16", "fp32"], default="auto")
    t.add_argument(
        "--no-augment", action="store_true", help="disable rotation/brightness/contrast jitter"
    )
    t.add_argument(
        "--augment",
        choices=["light", "acquisition"],
        default="light",
        help="augmentation recipe: light (small rotations, brightness, contrast) or "
        "acquisition (blur, sharpening, resampling, noise, gamma, crops, rotation, occlusion)",
    )
    t.add_argument("--label-smoothing", type=float, default=0.0, help="BCE targets y(1-e)+e/2")
    t.add_argument("--mixup", type=float, default=0.0, help="mixup Beta(a, a); 0 for none")
    t.add_argument(
        "--ema", type=float, help="keep an exponential moving average of the weights (decay)"
    )
    t.add_argument(
        "--orientation-head",
        type=float,
        default=0.0,
        help="share of each batch turned/inverted to train the orientation head; 0 for none",
    )
    t.add_argument(
        "--select",
        choices=["best_validation", "last"],
        default="best_validation",
        help="keep the epoch with the best validation ROC-AUC, or the last one",
    )
    t.add_argument(
        "--max-steps-per-epoch", type=positive_int, help="cap steps per epoch (smoke runs)"
    )
    t.add_argument(
        "--patients",
        type=Path,
        help="CSV with columns file,patient overriding file-name patient keys "
        "(default: the data folder's patients.csv, if it has one)",
    )
    t.add_argument(
        "--pretrained",
        type=Path,
        help="local torchvision weights file (e.g. ImageNet); nothing is downloaded",
    )


def class_list(text: str) -> tuple[str, ...]:
    """A comma-separated list of at least two distinct class folder names."""
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    if len(names) < 2 or len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(f"need two or more distinct class names, got {text!r}")
    return names


def data_classes(args: argparse.Namespace) -> tuple[str, ...]:
    """The classes asked for, else those of the folder's layout.json, else the default two."""
    import json

    from chestaid.data import DEFAULT_CLASSES
    from chestaid.errors import DatasetError
    from chestaid.findings_data import LAYOUT_JSON

    if args.classes:
        return tuple(args.classes)
    layout = Path(args.data_dir) / LAYOUT_JSON
    if layout.is_file():
        try:
            return tuple(json.loads(layout.read_text(encoding="utf-8"))["classes"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise DatasetError(f"cannot read the classes of {layout}: {exc}") from exc
    return DEFAULT_CLASSES


def patient_csv(args: argparse.Namespace) -> Path | None:
    """The patient CSV asked for, else the data folder's own ``patients.csv``, else None."""
    from chestaid.findings_data import PATIENTS_CSV

    if args.patients:
        return Path(args.patients)
    own = Path(args.data_dir) / PATIENTS_CSV
    return own if own.is_file() else None


def recipe_config(args: argparse.Namespace, **overrides: object) -> TrainConfig:
    """The training settings the recipe options describe."""
    import dataclasses

    from chestaid.training.augment import RECIPES
    from chestaid.training.config import TrainConfig

    config = TrainConfig(
        classes=data_classes(args),
        split=args.split,
        max_minutes=args.max_minutes,
        input_size=args.input_size,
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.lr,
        weight_decay=args.weight_decay,
        dropout=args.dropout,
        patience=args.patience,
        seed=args.seed,
        precision=args.precision,
        augmentation=not args.no_augment,
        augment=RECIPES[args.augment],
        label_smoothing=args.label_smoothing,
        mixup_alpha=args.mixup,
        ema_decay=args.ema,
        orientation_fraction=args.orientation_head,
        select=args.select,
        max_steps_per_epoch=args.max_steps_per_epoch,
        threads=args.threads,
        pretrained=str(args.pretrained) if args.pretrained else None,
    )
    return dataclasses.replace(config, **overrides)  # type: ignore[arg-type]


def run_train(args: argparse.Namespace) -> int:
    """Train, write the bundle and say where it went; returns the exit status."""
    from chestaid.training.loop import train

    config = recipe_config(
        args,
        architecture=args.arch,
        init_from=str(args.init_from) if args.init_from else None,
        freeze_body=args.freeze_body,
    )
    result = train(
        args.data_dir,
        args.out,
        config,
        patient_csv=patient_csv(args),
        version=args.model_version,
        progress=not args.no_progress,
    )
    sys.stdout.write(
        f"trained {config.architecture} -> {result.bundle_path} (version {result.manifest.version}): "
        + (
            f"best validation ROC-AUC {result.best_val_auc:.4f} at epoch {result.best_epoch}, "
            if config.select == "best_validation"
            else f"validation ROC-AUC {result.best_val_auc:.4f} at the last epoch {result.best_epoch}, "
        )
        + f"{result.seconds / 60:.1f} min; calibrate it next with 'chestaid calibrate'\n"
    )
    return EXIT_OK
