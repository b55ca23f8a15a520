"""The checkpoint written after every epoch, and resuming a run from it.

A run started again with the same output folder, settings and data continues from
the last completed epoch; one with other settings or data is refused rather than
mixed in.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import pickle
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from chestaid.errors import TrainingError
from chestaid.training.config import EpochRecord, TrainConfig

logger = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoint"
CHECKPOINT_NAME = "last.pt"


@dataclass
class Progress:
    """Where a run stands: the epochs done, the best so far and its weights."""

    next_epoch: int = 0  # 0-based index of the epoch to run next
    history: list[EpochRecord] = field(default_factory=list)
    best_auc: float = -1.0
    best_epoch: int = -1
    stale: int = 0  # epochs since the best one
    best_state: dict[str, torch.Tensor] | None = None
    # With a time budget: the epochs the first one showed will fit, which the learning
    # rate schedule is fitted to; None until then (or without a budget).
    planned_epochs: int | None = None


@dataclass(frozen=True)
class Trainables:
    """Everything whose state a checkpoint holds besides the progress."""

    model: nn.Module
    ema: torch.optim.swa_utils.AveragedModel | None
    optimiser: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR


def checkpoint_path(out: Path) -> Path:
    """The checkpoint file of the run writing its bundle to ``out``."""
    return out / CHECKPOINT_DIR / CHECKPOINT_NAME


def resume(
    path: Path,
    trainables: Trainables,
    *,
    config: TrainConfig,
    fingerprints: Mapping[str, str],
    device: torch.device,
) -> Progress:
    """Restore ``trainables`` from the checkpoint at ``path``; a fresh start without one.

    Raises:
        TrainingError: an unreadable checkpoint, or one of a run with other settings
            or data.
    """
    if not path.is_file():
        return Progress()
    try:
        ckpt = torch.load(path, map_location=device, weights_only=True)
    except (OSError, RuntimeError, EOFError, ValueError, pickle.UnpicklingError) as exc:
        raise TrainingError(
            f"cannot read the checkpoint {path} ({exc}); delete it to start afresh"
        ) from exc
    if not isinstance(ckpt, dict):
        raise TrainingError(f"{path} is not a ChestAid checkpoint; delete it")
    if ckpt.get("config") != config.to_dict() or ckpt.get("fingerprints") != fingerprints:
        raise TrainingError(
            f"{path} belongs to a run with other settings or data; "
            "use another --out folder or delete the checkpoint to start afresh"
        )
    trainables.model.load_state_dict(ckpt["model"])
    if trainables.ema is not None:
        trainables.ema.load_state_dict(ckpt["ema"])
    trainables.optimiser.load_state_dict(ckpt["optimiser"])
    trainables.scheduler.load_state_dict(ckpt["scheduler"])
    progress = Progress(
        next_epoch=ckpt["epoch"] + 1,
        history=[EpochRecord(**h) for h in ckpt["history"]],
        best_auc=ckpt["best_auc"],
        best_epoch=ckpt["best_epoch"],
        stale=ckpt["stale"],
        best_state=ckpt["best_state"],
        planned_epochs=ckpt.get("planned_epochs"),
    )
    logger.info("resuming from %s at epoch %d", path, progress.next_epoch + 1)
    return progress


def save_checkpoint(
    path: Path,
    trainables: Trainables,
    progress: Progress,
    *,
    epoch: int,
    config: TrainConfig,
    fingerprints: Mapping[str, str],
) -> None:
    """Write the state after ``epoch`` (0-based) to ``path``, flushed before the rename."""
    payload: dict[str, Any] = {
        "config": config.to_dict(),
        "fingerprints": fingerprints,
        "epoch": epoch,
        "model": trainables.model.state_dict(),
        "ema": trainables.ema.state_dict() if trainables.ema is not None else None,
        "optimiser": trainables.optimiser.state_dict(),
        "scheduler": trainables.scheduler.state_dict(),
        "best_state": progress.best_state,
        "best_auc": progress.best_auc,
        "best_epoch": progress.best_epoch,
        "stale": progress.stale,
        "history": [dataclasses.asdict(h) for h in progress.history],
        "planned_epochs": progress.planned_epochs,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(payload, tmp)
    with tmp.open("rb") as fh:
        os.fsync(fh.fileno())
    tmp.replace(path)


def remove_checkpoint(path: Path) -> None:
    """Delete a finished run's checkpoint, and its folder when that is left empty."""
    path.unlink(missing_ok=True)
    if path.parent.is_dir() and not any(path.parent.iterdir()):
        path.parent.rmdir()
