"""The training loop: class-balanced sampling, AdamW, mixed precision, weight averaging, resume.

``train`` turns a folder-per-class data set into an *uncalibrated* model bundle
(calibration is a separate step, ``chestaid calibrate``). Every epoch ends with a
checkpoint in ``OUT/checkpoint/``; a run started again with the same output folder
and settings resumes from it. A run is deterministic for a given seed and thread
count.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import pickle
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, WeightedRandomSampler

from chestaid.bundle import Manifest, save_bundle
from chestaid.data import (
    DEFAULT_CLASSES,
    DEFAULT_FRACTIONS,
    discover,
    fingerprint,
    split_by_patient,
    splits_to_json,
)
from chestaid.errors import ConfigurationError, DatasetError, TrainingError
from chestaid.metrics import roc_auc
from chestaid.models import ChestNet, build_model
from chestaid.preprocess import PreprocessSpec
from chestaid.training.augment import (
    ORIENTATION_CLASSES,
    AugmentConfig,
    augment_batch,
    orientation_batch,
)
from chestaid.training.dataset import ImageDataset, collect_logits

logger = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoint"
CHECKPOINT_NAME = "last.pt"


@dataclass(frozen=True)
class TrainConfig:
    """Every setting of a training run; recorded in the bundle's manifest."""

    architecture: str = "densenet121"
    input_size: int = 224
    epochs: int = 30
    batch_size: int = 32
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    warmup_fraction: float = 0.05
    dropout: float = 0.2
    patience: int = 6
    seed: int = 0
    precision: str = "auto"  # auto | bf16 | fp32 (CPU); auto picks AMP on CUDA
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    augmentation: bool = True
    balanced_sampling: bool = True
    max_steps_per_epoch: int | None = None
    cache: bool = True
    threads: int | None = None
    fractions: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_FRACTIONS))
    classes: tuple[str, ...] = DEFAULT_CLASSES
    pretrained: str | None = None
    eval_batch_size: int = 64
    channels_last: bool = True  # oneDNN's faster layout for convolutions on the CPU
    # Keeping logits off +-15: smoothed targets (y -> y(1 - e) + e/2) and mixup.
    label_smoothing: float = 0.0
    mixup_alpha: float = 0.0  # Beta(a, a) mixing of upright pairs; 0 for none
    # An exponential moving average of the weights (and buffers), evaluated and kept
    # instead of the raw weights; None for none.
    ema_decay: float | None = None
    # The orientation head's auxiliary task: this share of each batch is turned and/or
    # grey-inverted and used only to learn which way it was changed; 0 for no head.
    orientation_fraction: float = 0.0
    orientation_weight: float = 0.5
    # Which epoch's weights are kept: "best_validation" (highest validation ROC-AUC,
    # with early stopping) or "last" (in-distribution validation saturates and does not
    # tell which epoch holds up elsewhere; with weight averaging the last is the mean).
    select: str = "best_validation"

    def to_dict(self) -> dict[str, Any]:
        """The JSON form stored in the manifest and the checkpoint."""
        d = dataclasses.asdict(self)
        d["fractions"] = dict(self.fractions)
        d["classes"] = list(self.classes)
        return d


@dataclass
class EpochRecord:
    """What one epoch measured."""

    epoch: int
    train_loss: float
    val_auc: float
    learning_rate: float
    seconds: float


@dataclass
class TrainResult:
    """The outcome of :func:`train`."""

    bundle_path: Path
    manifest: Manifest
    history: list[EpochRecord]
    best_epoch: int
    best_val_auc: float
    seconds: float


def _autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    if precision == "fp32":
        return None
    if precision not in ("auto", "bf16", "amp"):
        raise ConfigurationError(f"unknown precision {precision!r}: use auto, bf16 or fp32")
    if device.type == "cuda":
        return torch.float16 if precision in ("auto", "amp") else torch.bfloat16
    return torch.bfloat16


def _lr_lambda(total_steps: int, warmup_steps: int) -> Callable[[int], float]:
    def schedule(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return schedule


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(payload, tmp)
    with tmp.open("rb") as fh:
        os.fsync(fh.fileno())
    tmp.replace(path)


def train(
    data_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    config: TrainConfig,
    *,
    patient_csv: str | os.PathLike[str] | None = None,
    version: str | None = None,
    progress: bool = True,
    device: str = "cpu",
) -> TrainResult:
    """Train a model on a folder-per-class data set and write an uncalibrated bundle.

    Args:
        data_dir: folder with ``NORMAL/`` and ``PNEUMONIA/`` (or their ``train/`` parent).
        out_dir: the bundle folder to write; also holds the resumable checkpoint.
        config: the training settings.
        patient_csv: optional CSV (file, patient) overriding the file-name patient keys.
        version: the model version string (default derived from the data and seed).
        progress: show a progress bar with loss and ETA on stderr.
        device: "cpu" or a CUDA device; nothing depends on a GPU.

    Returns:
        The bundle's path and manifest, the per-epoch history and the best epoch.

    Raises:
        DatasetError: unusable data folder or split.
        ConfigurationError: bad settings.
        TrainingError: an unreadable or foreign checkpoint in ``out_dir``.
    """
    from tqdm import tqdm

    started = time.monotonic()
    out = Path(out_dir)
    dev = torch.device(device)
    if config.threads:
        torch.set_num_threads(config.threads)
    _seed_everything(config.seed)
    spec = PreprocessSpec(input_size=config.input_size)
    base, examples = discover(data_dir, classes=config.classes, patient_csv=patient_csv)
    parts = split_by_patient(examples, fractions=config.fractions, seed=config.seed)
    fingerprints = {name: fingerprint(base, items) for name, items in parts.items()}
    logger.info("data %s: %s", base, ", ".join(f"{n}={len(items)}" for n, items in parts.items()))
    if "train" not in parts or "validation" not in parts:
        raise DatasetError("the split needs 'train' and 'validation' parts")
    train_set = ImageDataset(base, parts["train"], spec, cache=config.cache)
    val_set = ImageDataset(base, parts["validation"], spec, cache=config.cache)

    num_outputs = 1 if len(config.classes) == 2 else len(config.classes)
    if num_outputs != 1:
        raise ConfigurationError("training currently supports two classes (one logit)")
    if config.select not in ("best_validation", "last"):
        raise ConfigurationError(f"select must be best_validation or last, got {config.select!r}")
    if not 0.0 <= config.label_smoothing < 0.5:
        raise ConfigurationError("label_smoothing must be in [0, 0.5)")
    if not 0.0 <= config.orientation_fraction < 1.0:
        raise ConfigurationError("orientation_fraction must be in [0, 1)")
    orientation_outputs = ORIENTATION_CLASSES if config.orientation_fraction > 0 else 0
    model = build_model(
        config.architecture,
        num_outputs=num_outputs,
        dropout=config.dropout,
        pretrained_path=config.pretrained,
        orientation_outputs=orientation_outputs,
    ).to(dev)
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    ema: torch.optim.swa_utils.AveragedModel | None = None
    if config.ema_decay is not None:
        ema = torch.optim.swa_utils.AveragedModel(
            model,
            multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(config.ema_decay),  # type: ignore[no-untyped-call]
            use_buffers=True,
        )
    # The fused kernel: the default on the CPU steps each of DenseNet's ~360 tensors in
    # Python, which took 40% of a training step on 2 cores.
    optimiser = torch.optim.AdamW(
        model.parameters(),
        lr=config.learning_rate,
        weight_decay=config.weight_decay,
        fused=True,
    )
    labels = train_set.labels
    steps_per_epoch = math.ceil(len(train_set) / config.batch_size)
    if config.max_steps_per_epoch is not None:
        steps_per_epoch = min(steps_per_epoch, config.max_steps_per_epoch)
    total_steps = steps_per_epoch * config.epochs
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimiser,
        _lr_lambda(total_steps, max(1, int(config.warmup_fraction * total_steps))),
    )
    counts = np.bincount(labels, minlength=2).astype(np.float64)
    if (counts == 0).any():
        raise DatasetError("the training split lacks a class")
    pos_weight = None
    if not config.balanced_sampling:
        pos_weight = torch.tensor([counts[0] / counts[1]], device=dev)
    loss_fn = nn.BCEWithLogitsLoss(pos_weight=pos_weight, reduction="none")
    autocast_dtype = _autocast_dtype(config.precision, dev)
    scaler = torch.amp.GradScaler("cuda") if autocast_dtype == torch.float16 else None

    history: list[EpochRecord] = []
    best_auc, best_epoch, start_epoch, stale = -1.0, -1, 0, 0
    best_state: dict[str, torch.Tensor] | None = None
    ckpt_path = out / CHECKPOINT_DIR / CHECKPOINT_NAME
    if ckpt_path.is_file():
        try:
            ckpt = torch.load(ckpt_path, map_location=dev, weights_only=True)
        except (OSError, RuntimeError, EOFError, ValueError, pickle.UnpicklingError) as exc:
            raise TrainingError(
                f"cannot read the checkpoint {ckpt_path} ({exc}); delete it to start afresh"
            ) from exc
        if not isinstance(ckpt, dict):
            raise TrainingError(f"{ckpt_path} is not a ChestAid checkpoint; delete it")
        if ckpt.get("config") != config.to_dict() or ckpt.get("fingerprints") != fingerprints:
            raise TrainingError(
                f"{ckpt_path} belongs to a run with other settings or data; "
                "use another --out folder or delete the checkpoint to start afresh"
            )
        model.load_state_dict(ckpt["model"])
        if ema is not None:
            ema.load_state_dict(ckpt["ema"])
        optimiser.load_state_dict(ckpt["optimiser"])
        scheduler.load_state_dict(ckpt["scheduler"])
        best_state = ckpt["best_state"]
        best_auc, best_epoch, stale = ckpt["best_auc"], ckpt["best_epoch"], ckpt["stale"]
        start_epoch = ckpt["epoch"] + 1
        history = [EpochRecord(**h) for h in ckpt["history"]]
        logger.info("resuming from %s at epoch %d", ckpt_path, start_epoch + 1)

    weights = (1.0 / counts[labels]).tolist()
    for epoch in range(start_epoch, config.epochs):
        if stale >= config.patience:
            break
        epoch_started = time.monotonic()
        # Every random stream (sampler, augmentation, dropout) is seeded per epoch, so a
        # resumed run draws exactly what an uninterrupted one would.
        generator = torch.Generator().manual_seed(config.seed * 1000 + epoch)
        torch.manual_seed(config.seed * 1000 + epoch + 13)
        sampler = (
            WeightedRandomSampler(weights, len(train_set), replacement=True, generator=generator)
            if config.balanced_sampling
            else torch.utils.data.RandomSampler(train_set, generator=generator)
        )
        loader = DataLoader(
            train_set, batch_size=config.batch_size, sampler=sampler, drop_last=False
        )
        aug_generator = torch.Generator().manual_seed(config.seed * 1000 + epoch + 7)
        model.train()
        running, seen = 0.0, 0
        bar = tqdm(
            total=steps_per_epoch,
            desc=f"epoch {epoch + 1}/{config.epochs}",
            disable=not progress,
            unit="step",
            leave=False,
        )
        for step, (x, y) in enumerate(loader):
            if step >= steps_per_epoch:
                break
            if config.augmentation:
                x = augment_batch(x, spec, config.augment, aug_generator)
            x, y, turned = _auxiliary_and_mixup(x, y, spec, config, aug_generator)
            x, y = x.to(dev).contiguous(memory_format=memory_format), y.to(dev)
            with torch.autocast(
                dev.type, dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None
            ):
                heads = model.forward_heads(x)
            # Turned or inverted images teach only the orientation head.
            upright = (turned == 0).to(dev)
            per_image = loss_fn(heads.logits[:, 0].float(), y)
            loss = (per_image * upright).sum() / upright.sum().clamp_min(1)
            if heads.orientation is not None:
                loss = loss + config.orientation_weight * nn.functional.cross_entropy(
                    heads.orientation.float(), turned.to(dev)
                )
            optimiser.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.step(optimiser)
                scaler.update()
            else:
                loss.backward()
                optimiser.step()
            scheduler.step()
            if ema is not None:
                ema.update_parameters(model)
            running += float(loss.detach()) * len(y)
            seen += len(y)
            bar.set_postfix(loss=f"{running / seen:.4f}", lr=f"{scheduler.get_last_lr()[0]:.2e}")
            bar.update(1)
        bar.close()
        judged = _module_of(ema) if ema is not None else model
        val_logits = collect_logits(
            judged, val_set, batch_size=config.eval_batch_size, device=device
        )
        val_auc = roc_auc(val_logits, val_set.labels)
        record = EpochRecord(
            epoch=epoch + 1,
            train_loss=running / max(1, seen),
            val_auc=val_auc,
            learning_rate=float(scheduler.get_last_lr()[0]),
            seconds=time.monotonic() - epoch_started,
        )
        history.append(record)
        if config.select == "last" or val_auc > best_auc:
            best_auc, best_epoch, stale = val_auc, epoch + 1, 0
            best_state = {k: v.detach().clone() for k, v in judged.state_dict().items()}
        else:
            stale += 1
        logger.info(
            "epoch %d: loss %.4f, validation ROC-AUC %.4f (best %.4f at %d), %.0f s",
            record.epoch,
            record.train_loss,
            val_auc,
            best_auc,
            best_epoch,
            record.seconds,
        )
        _save_checkpoint(
            ckpt_path,
            {
                "config": config.to_dict(),
                "fingerprints": fingerprints,
                "epoch": epoch,
                "model": model.state_dict(),
                "ema": ema.state_dict() if ema is not None else None,
                "optimiser": optimiser.state_dict(),
                "scheduler": scheduler.state_dict(),
                "best_state": best_state,
                "best_auc": best_auc,
                "best_epoch": best_epoch,
                "stale": stale,
                "history": [dataclasses.asdict(h) for h in history],
            },
        )
    if best_state is None:
        raise TrainingError("training ran no epoch")
    model.load_state_dict(best_state)
    model.eval()
    manifest = Manifest(
        version=version or f"{config.architecture}-s{config.seed}-{fingerprints['train'][:8]}",
        orientation_outputs=orientation_outputs,
        architecture=config.architecture,
        classes=tuple(config.classes),
        preprocessing=spec,
        data_fingerprint={
            "data_root_name": base.name,
            "splits": fingerprints,
            "counts": {
                name: {
                    c: sum(1 for e in items if e.label == i) for i, c in enumerate(config.classes)
                }
                for name, items in parts.items()
            },
            "patients": {name: len({e.patient for e in items}) for name, items in parts.items()},
        },
        metrics={"validation_roc_auc": best_auc, "best_epoch": best_epoch},
        training={
            "config": config.to_dict(),
            "history": [dataclasses.asdict(h) for h in history],
            "seconds": time.monotonic() - started,
            "threads": torch.get_num_threads(),
            "device": str(dev),
        },
    )
    stored = save_bundle(
        out, model, manifest, splits=splits_to_json(parts, config.classes, config.seed)
    )
    # The run is complete: nothing is left to resume, and the bundle stays small.
    ckpt_path.unlink(missing_ok=True)
    if ckpt_path.parent.is_dir() and not any(ckpt_path.parent.iterdir()):
        ckpt_path.parent.rmdir()
    return TrainResult(
        bundle_path=out,
        manifest=stored,
        history=history,
        best_epoch=best_epoch,
        best_val_auc=best_auc,
        seconds=time.monotonic() - started,
    )


def _module_of(ema: torch.optim.swa_utils.AveragedModel) -> ChestNet:
    module = ema.module
    assert isinstance(module, ChestNet)
    return module


def _auxiliary_and_mixup(
    x: torch.Tensor,
    y: torch.Tensor,
    spec: PreprocessSpec,
    config: TrainConfig,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Smoothed targets, mixup of upright pairs, and the orientation task's changes.

    Returns the batch, the pneumonia targets and each item's orientation class (0 for
    upright items, the only ones with a pneumonia loss).
    """
    n = x.shape[0]
    target = y * (1.0 - config.label_smoothing) + 0.5 * config.label_smoothing
    turned = torch.zeros(n, dtype=torch.long)
    if config.orientation_fraction > 0:
        x, turned = orientation_batch(x, spec, config.orientation_fraction, generator)
    if config.mixup_alpha > 0:
        upright = torch.nonzero(turned == 0).flatten()
        if upright.numel() >= 2:
            alpha = torch.tensor(config.mixup_alpha)
            lam = float(torch.distributions.Beta(alpha, alpha).sample())
            partner = upright[torch.randperm(upright.numel(), generator=generator)]
            x = x.clone()
            target = target.clone()
            x[upright] = lam * x[upright] + (1.0 - lam) * x[partner]
            target[upright] = lam * target[upright] + (1.0 - lam) * target[partner]
    return x, target, turned
