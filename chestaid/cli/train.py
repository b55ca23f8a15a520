"""``chestaid train``: a model bundle from a folder-per-class data set."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from chestaid.cli.common import EXIT_OK, positive_int


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``train`` and its options."""
    t = sub.add_parser("train", help="train a model on a folder-per-class data set")
    t.add_argument(
        "data_dir", type=Path, help="folder with NORMAL/ and PNEUMONIA/ (or train/ holding them)"
    )
    t.add_argument(
        "--out", type=Path, required=True, help="bundle folder to write (resumes if interrupted)"
    )
    t.add_argument(
        "--arch", default="densenet121", help="backbone (densenet121, resnet50, efficientnet_b0)"
    )
    t.add_argument("--input-size", type=positive_int, default=224)
    t.add_argument("--epochs", type=positive_int, default=30)
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
        help="CSV with columns file,patient overriding file-name patient keys",
    )
    t.add_argument(
        "--pretrained",
        type=Path,
        help="local torchvision weights file (e.g. ImageNet); nothing is downloaded",
    )
    t.add_argument("--model-version", help="version string recorded in the bundle")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")


def run_train(args: argparse.Namespace) -> int:
    """Train, write the bundle and say where it went; returns the exit status."""
    from chestaid.training.augment import RECIPES
    from chestaid.training.loop import TrainConfig, train

    config = TrainConfig(
        architecture=args.arch,
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
    result = train(
        args.data_dir,
        args.out,
        config,
        patient_csv=args.patients,
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
