"""Whether a runtime gives the reference's answers: the condition for using it at all.

A runtime other than PyTorch float32 (another engine, or reduced precision) is used
only when, on the same inputs, its logits lie within :data:`LOGIT_TOLERANCE` of the
reference's, it makes the same decision at the governed threshold on every one, its
orientation logits (which turn an image upright or refuse it) lie within the same
tolerance, and its Grad-CAM maps correlate with the reference's at least
:data:`MIN_CAM_CORRELATION`. Calibration maps logits to probabilities; the bundle's
calibrator was fitted on PyTorch float32 logits, so it stays valid for a runtime only
because that runtime's logits agree with them within the tolerance.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from chestaid.gradcam import class_activation_map
from chestaid.models import Heads
from chestaid.preprocess import PreprocessSpec, preprocess
from chestaid.sample import synthetic_chest

LOGIT_TOLERANCE = 0.05
MIN_CAM_CORRELATION = 0.98

# Logits -> the decision at the governed threshold (True: flagged).
Decide = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Agreement:
    """How far a runtime's outputs are from the reference's on the same inputs."""

    cases: int
    max_logit_difference: float
    decision_flips: int
    max_orientation_difference: float  # 0 without an orientation head
    min_cam_correlation: float

    @property
    def agrees(self) -> bool:
        """Whether the runtime may be used in place of the reference."""
        return not self.reasons()

    def reasons(self) -> list[str]:
        """Why the runtime may not be used (empty when it may)."""
        out = []
        if not self.max_logit_difference <= LOGIT_TOLERANCE:
            out.append(
                f"logits differ by up to {self.max_logit_difference:.4f} (> {LOGIT_TOLERANCE})"
            )
        if self.decision_flips:
            out.append(f"{self.decision_flips} of {self.cases} decisions differ")
        if not self.max_orientation_difference <= LOGIT_TOLERANCE:
            out.append(f"orientation logits differ by up to {self.max_orientation_difference:.4f}")
        if not self.min_cam_correlation >= MIN_CAM_CORRELATION:
            out.append(
                f"Grad-CAM correlation down to {self.min_cam_correlation:.4f} (< {MIN_CAM_CORRELATION})"
            )
        return out

    def to_dict(self) -> dict[str, float | int | bool]:
        """The figures, for logs and reports."""
        return {
            "cases": self.cases,
            "max_logit_difference": self.max_logit_difference,
            "decision_flips": self.decision_flips,
            "max_orientation_difference": self.max_orientation_difference,
            "min_cam_correlation": self.min_cam_correlation,
            "agrees": self.agrees,
        }


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two maps; two flat maps agree (1), flat against not does not."""
    a = a.reshape(-1) - a.mean()
    b = b.reshape(-1) - b.mean()
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    if na < 1e-12 or nb < 1e-12:
        return 1.0 if na < 1e-12 and nb < 1e-12 else 0.0
    return float(np.dot(a, b) / (na * nb))


def compare_heads(
    reference: Heads, candidate: Heads, head_weight: torch.Tensor, decide: Decide
) -> Agreement:
    """The agreement of ``candidate``'s outputs with ``reference``'s for the same batch."""
    ref_logits = reference.logits[:, 0].detach().float().cpu().numpy().astype(np.float64)
    new_logits = candidate.logits[:, 0].detach().float().cpu().numpy().astype(np.float64)
    orientation = 0.0
    if reference.orientation is not None and candidate.orientation is not None:
        orientation = float(
            (reference.orientation.float().cpu() - candidate.orientation.float().cpu()).abs().max()
        )
    ref_cams = class_activation_map(reference.feature_map.cpu(), head_weight.cpu()).numpy()
    new_cams = class_activation_map(candidate.feature_map.cpu(), head_weight.cpu()).numpy()
    return Agreement(
        cases=len(ref_logits),
        max_logit_difference=float(np.max(np.abs(ref_logits - new_logits), initial=0.0)),
        decision_flips=int(np.sum(decide(ref_logits) != decide(new_logits))),
        max_orientation_difference=orientation,
        min_cam_correlation=min(
            (_correlation(r, n) for r, n in zip(ref_cams, new_cams, strict=True)), default=1.0
        ),
    )


def agreement_inputs(spec: PreprocessSpec, count: int = 6) -> torch.Tensor:
    """A fixed batch of radiograph-like model inputs through the bundle's preprocessing.

    Synthetic chests of several shapes and noise seeds, some turned and inverted (as the
    orientation head sees them in service): deterministic, so the check at load is the
    same on every start.
    """
    images = []
    shapes = ((512, 420), (400, 400), (380, 460))
    for i in range(count):
        rows, cols = shapes[i % len(shapes)]
        pixels = synthetic_chest(rows, cols, seed=i).astype(np.float32) / 4095.0
        if i % 3 == 1:
            pixels = np.rot90(pixels).copy()
        if i % 3 == 2:
            pixels = 1.0 - pixels
        images.append(preprocess(pixels, spec))
    return torch.stack(images)
