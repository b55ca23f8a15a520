"""Scoring an N-class model on every variant of each image, with Grad-CAM of the unmasked one.

The model comes as an :class:`AuditModel` (network, class names, preprocessing),
so tests pass a tiny random network and the command line builds one from a bundle.
Scores are the network's raw logits (no calibrator): the audit asks what the
network looks at, and the class it picks.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from chestaid.audit.cam_share import inside_fraction, outside_share
from chestaid.audit.masks import lung_prior_mask
from chestaid.audit.variants import (
    DEFAULT_MASK_SETTINGS,
    UNMASKED,
    VARIANTS,
    MaskSettings,
    make_variants,
)
from chestaid.errors import ConfigurationError
from chestaid.gradcam import class_activation_map
from chestaid.models import ChestNet
from chestaid.preprocess import PreprocessSpec, preprocess


@dataclass(frozen=True)
class AuditModel:
    """What the audit needs of a model: one logit per class, pooled-linear head."""

    model: ChestNet
    classes: tuple[str, ...]
    spec: PreprocessSpec

    def __post_init__(self) -> None:
        outputs = self.model.classifier.out_features
        if len(self.classes) < 3 or outputs != len(self.classes):
            raise ConfigurationError(
                f"the audit needs an N-class model with one logit per class (N >= 3); "
                f"this one has {outputs} outputs for {len(self.classes)} classes"
            )


@dataclass
class ScoredCases:
    """Logits per variant, and the unmasked Grad-CAM outside-lung shares, per case."""

    labels: list[int] = field(default_factory=list)
    logits: dict[str, list[np.ndarray]] = field(default_factory=lambda: {v: [] for v in VARIANTS})
    predicted_share: list[float] = field(default_factory=list)
    true_share: list[float] = field(default_factory=list)
    text_area: list[float] = field(default_factory=list)

    def logit_array(self, variant: str) -> np.ndarray:
        """The logits of one variant, shape (N, K)."""
        return np.stack(self.logits[variant]) if self.logits[variant] else np.zeros((0, 0))


def _forward(
    audit_model: AuditModel, images: Sequence[np.ndarray]
) -> tuple[np.ndarray, torch.Tensor]:
    x = torch.stack([preprocess(img, audit_model.spec) for img in images])
    with torch.no_grad():
        logits, fmap = audit_model.model.forward_with_features(x)
    return logits.float().numpy(), fmap


def score_cases(
    audit_model: AuditModel,
    cases: Iterable[tuple[np.ndarray, int]],
    *,
    settings: MaskSettings = DEFAULT_MASK_SETTINGS,
    batch_size: int = 16,
) -> ScoredCases:
    """Score each (grey image in [0, 1], true label) on every variant.

    Grad-CAM of the predicted and of the true class is taken from the unmasked
    forward pass; its share outside the lung prior is recorded per case.
    """
    audit_model.model.eval()
    weight = audit_model.model.classifier.weight.detach()
    size = audit_model.spec.input_size
    lungs = lung_prior_mask(size, size, settings.lung_prior)
    out = ScoredCases()
    batch: list[tuple[dict[str, np.ndarray], int]] = []

    def flush() -> None:
        for variant in VARIANTS:
            logits, fmap = _forward(audit_model, [v[variant] for v, _ in batch])
            out.logits[variant].extend(logits)
            if variant != UNMASKED:
                continue
            inside = inside_fraction(lungs, *fmap.shape[-2:])
            labels = np.array([label for _, label in batch])
            cams = torch.stack(
                [class_activation_map(fmap, weight, k) for k in range(len(audit_model.classes))],
                dim=1,
            ).numpy()  # (n, K, h, w)
            rows = np.arange(len(batch))
            out.predicted_share.extend(outside_share(cams[rows, logits.argmax(1)], inside))
            out.true_share.extend(outside_share(cams[rows, labels], inside))
        batch.clear()

    for pixels, label in cases:
        if not 0 <= label < len(audit_model.classes):
            raise ConfigurationError(f"label {label} is not a class of the model")
        variants = make_variants(pixels, settings)
        out.labels.append(label)
        out.text_area.append(variants.text_area)
        batch.append((variants.images, label))
        if len(batch) >= batch_size:
            flush()
    if batch:
        flush()
    return out
