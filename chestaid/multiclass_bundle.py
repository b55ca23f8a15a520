"""What calibrating and evaluating an N-class bundle share: its normal class, its class
calibrator, and the logits of every class for a list of cases.

An N-class bundle (``Manifest.num_outputs > 1``) keeps its calibration as
``{"class_calibrator": <multi-class record>, "calibrator": {"name": "identity"}, ...}``:
the class calibrator maps the N logits to N probabilities, and the binary calibrator
(identity) is applied to the triage log-odds of "not normal", so the triage score is
``1 - p[normal]``, the score the governed threshold is set on.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from chestaid.calibration.multiclass import (
    IdentityMultiClass,
    MultiClassCalibrator,
    multiclass_from_dict,
)
from chestaid.errors import BundleError, CalibrationError
from chestaid.models import ChestNet
from chestaid.training.dataset import ImageDataset, collect_outputs

NORMAL_CLASS = "normal"
TRIAGE_CALIBRATOR: dict[str, Any] = {"name": "identity"}


def normal_index(classes: Sequence[str]) -> int:
    """The index of the class named NORMAL (any case).

    Raises:
        BundleError: no class, or more than one, is named normal.
    """
    found = [i for i, c in enumerate(classes) if c.strip().lower() == NORMAL_CLASS]
    if len(found) != 1:
        raise BundleError(
            f"an N-class bundle needs exactly one class named NORMAL; classes are {list(classes)}"
        )
    return found[0]


def class_calibrator(calibration: Mapping[str, Any] | None) -> MultiClassCalibrator:
    """The class calibrator of a manifest's calibration record (identity when uncalibrated).

    Raises:
        BundleError: a record without a usable ``class_calibrator``.
    """
    if calibration is None:
        return IdentityMultiClass()
    record = calibration.get("class_calibrator")
    if record is None:
        raise BundleError("the N-class bundle's calibration record has no 'class_calibrator'")
    try:
        return multiclass_from_dict(record)
    except CalibrationError as exc:
        raise BundleError(f"unusable class calibrator: {exc}") from exc


def collect_class_logits(
    model: ChestNet, dataset: ImageDataset, *, batch_size: int = 32
) -> np.ndarray:
    """Every output's logit (n, K) for each item of ``dataset``, in order, in eval mode."""
    return collect_outputs(model, dataset, batch_size=batch_size)
