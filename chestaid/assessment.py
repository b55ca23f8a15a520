"""Whether an image is a judgeable frontal chest radiograph: the "not assessable" outcome.

A model trained on chest radiographs gives *some* score to any array it is fed: a
black frame, noise, a radiograph on its side or with its grey scale inverted. Those
scores mean nothing, and shown as a priority they mislead. So every prediction
carries an :class:`Assessment`; when it says ``assessable=False`` the score is kept
for audit only and must not be banded, flagged or overlaid.

The reasons are stable codes, stored by the service and shown to people with their
``detail`` sentence:

``featureless``
    blank, uniform or almost uniform: nothing to judge.
``noise``
    no image structure at the scale of anatomy (noise, a test pattern).
``orientation``
    on its side or upside down, and the orientation is not certain enough to turn it
    upright (a certain one is turned upright and scored; ``quarter_turns`` says so).
``inverted``
    the grey scale is inverted (bone dark, air bright): a photometric mix-up a
    person must look at.
``unfamiliar``
    far, in the network's own features, from every radiograph it was developed on:
    most likely not a frontal chest radiograph at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

REASONS: Final = ("featureless", "noise", "orientation", "inverted", "unfamiliar")


@dataclass(frozen=True)
class Assessment:
    """The verdict on whether an image can be scored as a frontal chest radiograph."""

    assessable: bool
    reason: str | None = None  # one of REASONS when not assessable
    detail: str = ""  # one sentence for people
    quarter_turns: int = 0  # counter-clockwise quarter turns applied before scoring (0-3)

    def __post_init__(self) -> None:
        if self.assessable and self.reason is not None:
            raise ValueError("an assessable image has no reason")
        if not self.assessable and self.reason not in REASONS:
            raise ValueError(f"unknown not-assessable reason {self.reason!r}")
        if self.quarter_turns not in (0, 1, 2, 3):
            raise ValueError(f"quarter_turns must be 0-3, got {self.quarter_turns}")

    def to_dict(self) -> dict[str, Any]:
        """The JSON form used by ``chestaid predict --json`` and the service."""
        return {
            "assessable": self.assessable,
            "reason": self.reason,
            "detail": self.detail,
            "quarter_turns": self.quarter_turns,
        }


ASSESSABLE: Final = Assessment(assessable=True)


def not_assessable(reason: str, detail: str) -> Assessment:
    """An assessment saying the image cannot be judged, for ``reason`` (one of REASONS)."""
    return Assessment(assessable=False, reason=reason, detail=detail)
