"""The parts of a training step: precision, learning-rate schedule, weight averaging, targets.

Pure helpers of :func:`chestaid.training.loop.train`; none reads files or the clock.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from functools import partial

import numpy as np
import torch

from chestaid.errors import ConfigurationError
from chestaid.metrics import roc_auc
from chestaid.models import ChestNet
from chestaid.preprocess import PreprocessSpec
from chestaid.training.augment import orientation_batch
from chestaid.training.config import TrainConfig


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``precision`` (auto, bf16, amp or fp32); None for fp32."""
    if precision == "fp32":
        return None
    if precision not in ("auto", "bf16", "amp"):
        raise ConfigurationError(f"unknown precision {precision!r}: use auto, bf16 or fp32")
    if device.type == "cuda":
        return torch.float16 if precision in ("auto", "amp") else torch.bfloat16
    return torch.bfloat16


def lr_schedule(total_steps: int, warmup_steps: int) -> Callable[[int], float]:
    """Linear warm-up, then cosine decay to zero: the learning-rate factor per step."""

    def schedule(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return schedule


def output_count(classes: int) -> int:
    """One logit for two classes, otherwise one per class."""
    return 1 if classes == 2 else classes


def validation_figures(logits: np.ndarray, labels: np.ndarray) -> tuple[float, float, float]:
    """ROC-AUC, unsmoothed loss and accuracy of validation logits.

    One logit (shape (n,)): ROC-AUC, BCE and accuracy at 0.5. Several (shape (n, K)):
    the one-vs-rest ROC-AUC averaged over the classes, cross-entropy and top-1 accuracy.
    """
    y = np.asarray(labels, dtype=np.int64)
    z = np.asarray(logits, dtype=np.float64)
    if z.ndim == 1:
        auc = roc_auc(z, y)
        loss = float(np.mean(np.logaddexp(0.0, z) - y * z))
        return auc, loss, float(np.mean((z >= 0) == (y == 1)))
    shifted = z - z.max(axis=1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    aucs = [roc_auc(log_p[:, k], (y == k).astype(np.int64)) for k in range(z.shape[1])]
    loss = float(-np.mean(log_p[np.arange(len(y)), y]))
    return float(np.mean(aucs)), loss, float(np.mean(z.argmax(axis=1) == y))


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and PyTorch's global generators."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def weight_average(model: ChestNet, decay: float) -> torch.optim.swa_utils.AveragedModel:
    """An exponential moving average of ``model``'s weights and buffers, with a warm-up.

    After ``n`` updates the average moves by ``1 - min(decay, (1 + n) / (10 + n))``: a fixed
    decay of 0.998 would still hold 17 % of the random initial weights after 900 steps, which
    is all a short (budgeted) run takes; the warm-up forgets them within the first epoch.
    """
    return torch.optim.swa_utils.AveragedModel(
        model, multi_avg_fn=partial(warm_ema_update, decay=decay), use_buffers=True
    )


def ema_decay_at(updates: int, decay: float) -> float:
    """The decay used for the update after ``updates`` earlier ones."""
    return min(decay, (1 + updates) / (10 + updates))


@torch.no_grad()
def warm_ema_update(
    averaged: list[torch.Tensor],
    current: list[torch.Tensor],
    num_averaged: torch.Tensor | int,
    *,
    decay: float,
) -> None:
    weight = 1.0 - ema_decay_at(int(num_averaged), decay)
    for mean, now in zip(averaged, current, strict=True):
        if mean.is_floating_point():
            mean.lerp_(now, weight)
        else:  # counters such as a batch norm's batches seen
            mean.copy_(now)


def averaged_module(ema: torch.optim.swa_utils.AveragedModel) -> ChestNet:
    """The network inside a weight average."""
    module = ema.module
    assert isinstance(module, ChestNet)
    return module


def auxiliary_and_mixup(
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
