"""The head of an N-class network as triage sees it: one score, "not normal".

An N-class bundle (NORMAL and several kinds of pneumonia, say) gives N raw logits.
Its multi-class calibrator turns them into N probabilities; triage keeps one
number, the log-odds of "not normal" (``log((1 - p_normal) / p_normal)``), which the
rest of ChestAid treats exactly as a binary bundle's logit: the binary calibrator
(normally the identity), the governed threshold, the guardrails and local
recalibration all work on it unchanged. The per-class probabilities travel beside
the score, for people to read.

The Grad-CAM of the triage score is exact for ChestAid's pooled-linear heads: the
gradient of the triage log-odds with respect to the pooled features is
``triage_gradient @ W`` (the derivative with respect to each raw logit, times the
linear head's weights), so each image gets its own channel weights.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from chestaid.calibration.multiclass import (
    MultiClassCalibrator,
    triage_gradient,
    triage_logit,
)

ClassProbabilities = tuple[tuple[str, float], ...]


@dataclass(frozen=True)
class ClassHead:
    """An N-class network's calibrated classes and the triage score drawn from them.

    Attributes:
        classes: the class names, in the order of the network's logits.
        calibrator: the multi-class calibrator of the raw logits.
        normal_index: the index of the class NORMAL.
    """

    classes: tuple[str, ...]
    calibrator: MultiClassCalibrator
    normal_index: int

    def probabilities(self, logits: np.ndarray) -> np.ndarray:
        """Calibrated probabilities (n, K) of raw logits (n, K); rows sum to one."""
        return self.calibrator.predict_proba(np.asarray(logits, dtype=np.float64))

    def triage_logits(self, probabilities: np.ndarray) -> np.ndarray:
        """The log-odds of "not normal" (n,) from calibrated probabilities (n, K)."""
        return triage_logit(probabilities, self.normal_index)

    def cam_weights(self, logits: np.ndarray, head_weight: torch.Tensor) -> torch.Tensor:
        """d(triage log-odds)/d(pooled features), one row of channel weights per image.

        Args:
            logits: the raw logits (n, K) of the pass being explained.
            head_weight: the linear head's weight (K, C).

        Returns:
            (n, C) float32 on the head weight's device.
        """
        gradient = triage_gradient(self.calibrator, logits, self.normal_index)
        g = torch.as_tensor(gradient, dtype=torch.float32, device=head_weight.device)
        return g @ head_weight.float()

    def labelled(self, probabilities: np.ndarray) -> ClassProbabilities:
        """One image's probabilities (K,) named by class, in the bundle's order."""
        return tuple((name, float(p)) for name, p in zip(self.classes, probabilities, strict=True))
