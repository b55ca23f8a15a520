"""A training run's settings and what each epoch measured; both are stored in the bundle."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from chestaid.data import DEFAULT_CLASSES, DEFAULT_FRACTIONS
from chestaid.training.augment import AugmentConfig


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
    # How images are dealt to the parts: "patient" (every patient's images in one part)
    # or "image" (a random split by image, only to reproduce designs that split so).
    split: str = "patient"
    # Stop before an epoch that would take the run (resumed parts included) past this
    # many minutes of training on its cores (CPU time over threads); None for no limit.
    max_minutes: float | None = None
    # Train only the linear head on a frozen body (e.g. one loaded with ``init_from``).
    freeze_body: bool = False
    # A bundle whose body weights start this run (its head is replaced); None for none.
    init_from: str | None = None

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
    val_auc: float  # ROC-AUC, one-vs-rest macro average for more than two classes
    learning_rate: float
    seconds: float
    train_accuracy: float | None = None  # on the (augmented, resampled) training batches
    val_loss: float | None = None  # unsmoothed cross-entropy on the validation part
    val_accuracy: float | None = None
    # CPU time over the thread count: the epoch's time on its own cores, whatever else ran.
    core_seconds: float | None = None
