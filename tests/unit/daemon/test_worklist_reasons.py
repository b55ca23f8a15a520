"""Why a study stands where it does (pure; the study after it: test_placement.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from daemon.placement import placement_reasons
from daemon.serving import PriorityBands
from daemon.settings import PrioritySettings
from daemon.worklist import NotAssessedImages, StudyEntry, order_worklist

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
BANDS = PriorityBands.resolve(PrioritySettings().bands, 0.9)
TOP = BANDS.cutoffs[0][0]


def _entry(
    uid: str, score: float | None, minutes_ago: float, *, sender: str = "MEDIUM"
) -> StudyEntry:
    return StudyEntry(
        study_instance_uid=uid,
        score=score,
        logit=0.0 if score is not None else None,
        threshold=0.9,
        band=BANDS.assign(score) if score is not None else None,
        result_id=1,
        arrived_at=NOW - timedelta(minutes=minutes_ago),
        requested_priority=sender,
        images=1,
        model_version="m",
        calibration_version=1,
        not_assessed=None
        if score is not None
        else NotAssessedImages(reason="noise", detail="noise", result_id=1, count=1),
    )


def _reasons() -> dict[str, tuple[str, ...]]:
    entries = [
        _entry("urgent", 0.97, 1),
        _entry("overdue-low", 0.0, 300),
        _entry("overdue-urgent", 0.95, 400),
        _entry("sender-high", 0.05, 1, sender="HIGH"),
        _entry("not-assessed", None, 1),
        _entry("routine", 0.2, 1),
    ]
    items = order_worklist(entries, BANDS, now=NOW, max_wait=timedelta(minutes=120))
    return {i.entry.study_instance_uid: placement_reasons(i, TOP) for i in items}


def test_an_overdue_study_with_a_low_score_is_overdue_not_urgent_by_score() -> None:
    reasons = _reasons()
    assert reasons["overdue-low"] == ("overdue",)
    assert reasons["overdue-urgent"] == ("urgent_by_score", "overdue")
    assert reasons["urgent"] == ("urgent_by_score",)
    assert reasons["sender-high"] == ("sender_high",)
    assert reasons["not-assessed"] == ("not_assessed",)
    assert reasons["routine"] == ()
