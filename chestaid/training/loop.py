"""The training loop: class-balanced sampling, AdamW, mixed precision, weight averaging, resume.

``train`` turns a folder-per-class data set into an *uncalibrated* model bundle
(calibration is a separate step, ``chestaid calibrate``). Every epoch ends with a
checkpoint in ``OUT/checkpoint/`` (:mod:`chestaid.training.checkpoint`); a run
started again with the same output folder and settings resumes from it. A run is
deterministic for a given seed and thread count. The settings are
:mod:`chestaid.training.config`'s, the pieces of a step :mod:`chestaid.training.step`'s.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, WeightedRandomSampler

from chestaid.bundle import Manifest, save_bundle
from chestaid.data import discover, fingerprint, keyed_by_image, split_by_patient, splits_to_json
from chestaid.errors import ConfigurationError, DatasetError, TrainingError
from chestaid.models import build_model
from chestaid.preprocess import PreprocessSpec
from chestaid.runtimes.cpu import cpu_flags, cpu_name, torch_bf16_native
from chestaid.training.augment import ORIENTATION_CLASSES, augment_batch
from chestaid.training.checkpoint import (
    CHECKPOINT_DIR,
    CHECKPOINT_NAME,
    Trainables,
    checkpoint_path,
    remove_checkpoint,
    resume,
    save_checkpoint,
)
from chestaid.training.config import EpochRecord, TrainConfig
from chestaid.training.dataset import ImageDataset, collect_logits, collect_outputs
from chestaid.training.init import freeze_body, start_from_bundle
from chestaid.training.step import (
    autocast_dtype,
    auxiliary_and_mixup,
    averaged_module,
    lr_schedule,
    output_count,
    seed_everything,
    validation_figures,
    weight_average,
)

__all__ = [
    "CHECKPOINT_DIR",
    "CHECKPOINT_NAME",
    "EpochRecord",
    "TrainConfig",
    "TrainResult",
    "collect_logits",
    "train",
]

logger = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """The outcome of :func:`train`."""

    bundle_path: Path
    manifest: Manifest
    history: list[EpochRecord]
    best_epoch: int
    best_val_auc: float
    seconds: float


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
    seed_everything(config.seed)
    spec = PreprocessSpec(input_size=config.input_size)
    base, examples = discover(data_dir, classes=config.classes, patient_csv=patient_csv)
    if config.split not in ("patient", "image"):
        raise ConfigurationError(f"split must be patient or image, got {config.split!r}")
    if config.split == "image":
        logger.warning("splitting by image: a patient's images may land in several parts")
        examples = keyed_by_image(examples)
    parts = split_by_patient(examples, fractions=config.fractions, seed=config.seed)
    fingerprints = {name: fingerprint(base, items) for name, items in parts.items()}
    logger.info("data %s: %s", base, ", ".join(f"{n}={len(items)}" for n, items in parts.items()))
    if "train" not in parts or "validation" not in parts:
        raise DatasetError("the split needs 'train' and 'validation' parts")
    train_set = ImageDataset(base, parts["train"], spec, cache=config.cache)
    val_set = ImageDataset(base, parts["validation"], spec, cache=config.cache)

    num_outputs = output_count(len(config.classes))
    if num_outputs > 1 and config.mixup_alpha > 0:
        raise ConfigurationError("mixup is for two-class training (one logit) only")
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
    if config.init_from is not None:
        start_from_bundle(model, config.init_from)
    if config.freeze_body:
        freeze_body(model)
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    ema = weight_average(model, config.ema_decay) if config.ema_decay is not None else None
    # The fused kernel: the default on the CPU steps each of DenseNet's ~360 tensors in
    # Python, which took 40% of a training step on 2 cores.
    optimiser = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad],
        lr=config.learning_rate,
        weight_decay=config.weight_decay,
        fused=True,
    )
    labels = train_set.labels
    steps_per_epoch = math.ceil(len(train_set) / config.batch_size)
    if config.max_steps_per_epoch is not None:
        steps_per_epoch = min(steps_per_epoch, config.max_steps_per_epoch)
    # The schedule runs over the planned epochs: all of them, or under a time budget
    # those the first epoch shows will fit (set after it; a resumed run restores it).
    planned = [config.epochs]

    def schedule(step: int) -> float:
        total = steps_per_epoch * planned[0]
        return lr_schedule(total, max(1, int(config.warmup_fraction * total)))(step)

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimiser, schedule)
    counts = np.bincount(labels, minlength=len(config.classes)).astype(np.float64)
    if (counts == 0).any():
        raise DatasetError("the training split lacks a class")
    class_loss = _class_loss(config, counts, num_outputs, dev)
    precision = config.precision
    if precision == "auto" and dev.type == "cpu" and not torch_bf16_native(cpu_flags()):
        precision = "fp32"  # bfloat16 without native support is slower, not faster
    amp_dtype = autocast_dtype(precision, dev)
    scaler = torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None

    trainables = Trainables(model=model, ema=ema, optimiser=optimiser, scheduler=scheduler)
    ckpt_path = checkpoint_path(out)
    state = resume(ckpt_path, trainables, config=config, fingerprints=fingerprints, device=dev)
    if state.planned_epochs is not None:
        planned[0] = state.planned_epochs

    weights = (1.0 / counts[labels]).tolist()
    for epoch in range(state.next_epoch, config.epochs):
        if state.stale >= config.patience:
            break
        if epoch >= planned[0] or _out_of_time(state.history, config.max_minutes):
            logger.info(
                "stopping before epoch %d: the next would pass %s minutes",
                epoch + 1,
                config.max_minutes,
            )
            break
        epoch_started = time.monotonic()
        cpu_started = time.process_time()
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
        if config.freeze_body:
            model.features.eval()  # a frozen body keeps its normalisation statistics
        running, seen, correct = 0.0, 0, 0
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
            x, target, turned = auxiliary_and_mixup(x, y, spec, config, aug_generator)
            # Smoothed and mixed targets are one logit's; several logits take the class.
            y = target if num_outputs == 1 else y
            x, y = x.to(dev).contiguous(memory_format=memory_format), y.to(dev)
            with torch.autocast(
                dev.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None
            ):
                heads = model.forward_heads(x)
            # Turned or inverted images teach only the orientation head.
            upright = (turned == 0).to(dev)
            per_image = class_loss(heads.logits.float(), y)
            loss = (per_image * upright).sum() / upright.sum().clamp_min(1)
            if heads.orientation is not None:
                loss = loss + config.orientation_weight * nn.functional.cross_entropy(
                    heads.orientation.float(), turned.to(dev)
                )
            optimiser.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(loss).backward()  # type: ignore[no-untyped-call]
                scaler.step(optimiser)
                scaler.update()
            else:
                loss.backward()  # type: ignore[no-untyped-call]
                optimiser.step()
            scheduler.step()
            if ema is not None:
                ema.update_parameters(model)
            running += float(loss.detach()) * len(y)
            seen += len(y)
            correct += _correct(heads.logits.detach(), y, upright)
            bar.set_postfix(loss=f"{running / seen:.4f}", lr=f"{scheduler.get_last_lr()[0]:.2e}")
            bar.update(1)
        bar.close()
        judged = averaged_module(ema) if ema is not None else model
        val_outputs = collect_outputs(
            judged, val_set, batch_size=config.eval_batch_size, device=device
        )
        val_auc, val_loss, val_accuracy = validation_figures(
            val_outputs[:, 0] if num_outputs == 1 else val_outputs, val_set.labels
        )
        record = EpochRecord(
            epoch=epoch + 1,
            train_loss=running / max(1, seen),
            val_auc=val_auc,
            learning_rate=float(scheduler.get_last_lr()[0]),
            seconds=time.monotonic() - epoch_started,
            core_seconds=(time.process_time() - cpu_started) / torch.get_num_threads(),
            train_accuracy=correct / max(1, seen),
            val_loss=val_loss,
            val_accuracy=val_accuracy,
        )
        state.history.append(record)
        if config.max_minutes is not None and state.planned_epochs is None:
            state.planned_epochs = planned_epochs(record, config.epochs, config.max_minutes)
            planned[0] = state.planned_epochs
            logger.info("%d epochs fit the budget of %s minutes", planned[0], config.max_minutes)
        if config.select == "last" or val_auc > state.best_auc:
            state.best_auc, state.best_epoch, state.stale = val_auc, epoch + 1, 0
            state.best_state = {k: v.detach().clone() for k, v in judged.state_dict().items()}
        else:
            state.stale += 1
        logger.info(
            "epoch %d: loss %.4f, validation ROC-AUC %.4f (best %.4f at %d), %.0f s",
            record.epoch,
            record.train_loss,
            val_auc,
            state.best_auc,
            state.best_epoch,
            record.seconds,
        )
        save_checkpoint(
            ckpt_path,
            trainables,
            state,
            epoch=epoch,
            config=config,
            fingerprints=fingerprints,
        )
    if state.best_state is None:
        raise TrainingError("training ran no epoch")
    model.load_state_dict(state.best_state)
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
        metrics={"validation_roc_auc": state.best_auc, "best_epoch": state.best_epoch},
        training={
            "config": config.to_dict(),
            "history": [dataclasses.asdict(h) for h in state.history],
            "seconds": time.monotonic() - started,
            "threads": torch.get_num_threads(),
            "device": str(dev),
            # What the epochs ran in and on (a resumed run: where it finished).
            "precision": "float32" if amp_dtype is None else str(amp_dtype).removeprefix("torch."),
            "processor": cpu_name() if dev.type == "cpu" else torch.cuda.get_device_name(dev),
        },
    )
    stored = save_bundle(
        out, model, manifest, splits=splits_to_json(parts, config.classes, config.seed)
    )
    # The run is complete: nothing is left to resume, and the bundle stays small.
    remove_checkpoint(ckpt_path)
    return TrainResult(
        bundle_path=out,
        manifest=stored,
        history=state.history,
        best_epoch=state.best_epoch,
        best_val_auc=state.best_auc,
        seconds=time.monotonic() - started,
    )


def _class_loss(
    config: TrainConfig, counts: np.ndarray, num_outputs: int, device: torch.device
) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """Per-image loss of the class head: BCE on one logit, cross-entropy on several.

    Both take the float labels the dataset yields; label smoothing is the targets' for
    one logit (already in ``y``) and the loss's own for several.
    """
    if num_outputs == 1:
        pos_weight = None
        if not config.balanced_sampling:
            pos_weight = torch.tensor([counts[0] / counts[1]], device=device)
        bce = nn.BCEWithLogitsLoss(pos_weight=pos_weight, reduction="none")
        return lambda logits, y: bce(logits[:, 0], y)
    weight = None
    if not config.balanced_sampling:
        weight = torch.tensor(counts.sum() / (len(counts) * counts), dtype=torch.float32)
    ce = nn.CrossEntropyLoss(
        weight=weight.to(device) if weight is not None else None,
        label_smoothing=config.label_smoothing,
        reduction="none",
    )
    return lambda logits, y: ce(logits, y.round().long())


def _correct(logits: torch.Tensor, y: torch.Tensor, upright: torch.Tensor) -> int:
    """How many upright items of a batch the class head gets right (targets may be smoothed)."""
    if logits.shape[1] == 1:
        hit = (logits[:, 0] >= 0) == (y >= 0.5)
    else:
        hit = logits.argmax(dim=1) == y.round().long()
    return int((hit & upright.bool()).sum())


def planned_epochs(first: EpochRecord, epochs: int, max_minutes: float) -> int:
    """How many epochs as long as the first fit ``max_minutes`` (at least 1, at most ``epochs``)."""
    took = first.core_seconds if first.core_seconds is not None else first.seconds
    return max(1, min(epochs, int(max_minutes * 60.0 // max(took, 1e-9))))


def _out_of_time(history: list[EpochRecord], max_minutes: float | None) -> bool:
    """Whether one more epoch, as long as the last, would pass the run's time budget.

    The budget is of the run's own time on its cores (CPU time over the thread count),
    so other work on the machine does not shorten a run; an epoch recorded without that
    figure counts its wall time.
    """
    if max_minutes is None or not history:
        return False

    def took(h: EpochRecord) -> float:
        return h.core_seconds if h.core_seconds is not None else h.seconds

    spent = sum(took(h) for h in history)
    return spent + took(history[-1]) > max_minutes * 60.0
