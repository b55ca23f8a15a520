"""Priority bands: the configured bands given numbers on the threshold in use."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from chestaid.errors import ConfigurationError
from daemon.settings import Band


@dataclass(frozen=True)
class PriorityBands:
    """Priority bands resolved against a threshold: (name, minimum score), highest first."""

    cutoffs: tuple[tuple[str, float], ...]

    @classmethod
    def resolve(cls, bands: Sequence[Band], threshold: float) -> PriorityBands:
        """Put numbers on configured bands; ``"threshold"`` becomes the governed threshold.

        Raises:
            ConfigurationError: the model has no governed threshold.
        """
        if not math.isfinite(threshold):
            raise ConfigurationError(
                "the model bundle has no governed threshold, so the URGENT band is undefined: "
                "calibrate the bundle (chestaid calibrate) before serving it"
            )
        resolved = [
            (band.name, threshold if band.min_score == "threshold" else float(band.min_score))
            for band in bands
        ]
        return cls(tuple(sorted(resolved, key=lambda item: item[1], reverse=True)))

    def assign(self, score: float) -> str:
        """The band of a calibrated score: the first whose minimum it reaches."""
        for name, minimum in self.cutoffs:
            if score >= minimum:
                return name
        return self.cutoffs[-1][0]
