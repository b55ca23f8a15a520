"""Input checks shared by the charts."""

from __future__ import annotations

import math
from collections.abc import Sequence


def probabilities(values: Sequence[float], what: str) -> list[float]:
    """``values`` as floats, each finite and within [0, 1]."""
    out = [float(v) for v in values]
    for v in out:
        if not (math.isfinite(v) and 0.0 <= v <= 1.0):
            raise ValueError(f"{what} must be finite and within [0, 1], got {v!r}")
    return out


def check_bins(n_bins: int) -> None:
    """Raise ValueError unless there is at least one score bin."""
    if n_bins < 1:
        raise ValueError(f"n_bins must be at least 1, got {n_bins}")
