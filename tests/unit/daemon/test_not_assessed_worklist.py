"""Studies ChestAid could not assess on the worklist: never silently routine (real SQLite)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from daemon.db.session import SessionFactory, writing
from daemon.serving import PriorityBands
from daemon.settings import Band, PrioritySettings
from daemon.worklist import (
    NotAssessedImages,
    StudyEntry,
    order_worklist,
    study_entries,
    worklist,
)
from tests.daemon_harness import not_assessable_detail, record_scored

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
BANDS = PriorityBands.resolve(PrioritySettings().bands, 0.9)
MAX_WAIT = timedelta(minutes=120)


def _entry(
    uid: str,
    score: float | None,
    minutes_ago: float,
    *,
    unjudged: int = 0,
    sender: str = "MEDIUM",
    bands: PriorityBands = BANDS,
) -> StudyEntry:
    return StudyEntry(
        study_instance_uid=uid,
        score=score,
        logit=None if score is None else 0.0,
        threshold=0.9,
        band=None if score is None else bands.assign(score),
        result_id=1,
        arrived_at=NOW - timedelta(minutes=minutes_ago),
        requested_priority=sender,
        images=1 + unjudged if score is not None else unjudged,
        model_version="m",
        calibration_version=1,
        not_assessed=NotAssessedImages("noise", "no structure", 2, unjudged) if unjudged else None,
    )


def _order(entries: list[StudyEntry], bands: PriorityBands = BANDS) -> list[str]:
    items = order_worklist(entries, bands, now=NOW, max_wait=MAX_WAIT)
    return [i.entry.study_instance_uid for i in items]


def test_a_not_assessed_study_stands_after_urgent_and_overdue_and_before_routine() -> None:
    entries = [
        _entry("routine-high", 0.89, 50),
        _entry("not-assessed-new", None, 1, unjudged=1),
        _entry("urgent", 0.95, 1),
        _entry("not-assessed-old", None, 30, unjudged=1),
        _entry("routine-overdue", 0.01, 300),
    ]
    items = order_worklist(entries, BANDS, now=NOW, max_wait=MAX_WAIT)
    assert [i.entry.study_instance_uid for i in items] == [
        "routine-overdue",
        "urgent",
        "not-assessed-old",  # among themselves by arrival: they have no score
        "not-assessed-new",
        "routine-high",
    ]
    unjudged = items[2]
    assert unjudged.not_assessed and unjudged.band is None and not unjudged.overdue
    assert not items[4].not_assessed and items[4].band == "ROUTINE"


def test_an_overdue_or_sender_high_not_assessed_study_is_promoted_and_still_marked() -> None:
    entries = [
        _entry("urgent", 0.95, 1),
        _entry("high-not-assessed", None, 2, unjudged=1, sender="HIGH"),
        _entry("overdue-not-assessed", None, 500, unjudged=1),
    ]
    items = order_worklist(entries, BANDS, now=NOW, max_wait=MAX_WAIT)
    assert [i.entry.study_instance_uid for i in items] == [
        "overdue-not-assessed",
        "urgent",  # in the top band, a score before no score
        "high-not-assessed",
    ]
    assert all(i.band == "URGENT" for i in items)
    assert items[0].not_assessed and items[0].overdue
    assert items[2].not_assessed and items[2].raised_by_sender


def test_with_more_bands_not_assessed_comes_right_after_the_top_band() -> None:
    three = PriorityBands.resolve(
        [
            Band(name="URGENT", min_score="threshold"),
            Band(name="SOON", min_score=0.5),
            Band(name="ROUTINE", min_score=0.0),
        ],
        0.9,
    )
    entries = [
        _entry("soon", 0.7, 5, bands=three),
        _entry("routine", 0.1, 5, bands=three),
        _entry("not-assessed", None, 5, unjudged=1, bands=three),
        _entry("urgent", 0.99, 5, bands=three),
    ]
    assert _order(entries, three) == ["urgent", "not-assessed", "soon", "routine"]


def test_a_study_is_placed_by_the_highest_of_its_images_not_assessed_counted_after_urgent(
    sessions: SessionFactory,
) -> None:
    # Routine + not assessable: the study stands as not assessed.
    mixed_routine = record_scored(
        sessions, "1.1", logit=-2.0, score=0.2, above=False, study_uid="mixed-routine"
    )
    unjudged = {"logit": 3.0, "score": 0.97, "above": False}
    record_scored(sessions, "1.2", study_uid=mixed_routine, not_assessable="inverted", **unjudged)
    # Urgent + not assessable: the study stays urgent, and says an image was not assessed.
    mixed_urgent = record_scored(
        sessions, "2.1", logit=2.5, score=0.95, above=True, study_uid="mixed-urgent"
    )
    record_scored(sessions, "2.2", study_uid=mixed_urgent, not_assessable="noise", **unjudged)
    alone = record_scored(
        sessions, "3.1", logit=0.0, score=0.99, above=False, not_assessable="featureless"
    )
    routine = record_scored(sessions, "4.1", logit=1.0, score=0.6, above=False)

    with writing(sessions) as s:
        items = worklist(s, BANDS, max_wait=MAX_WAIT)
        entries = {e.study_instance_uid: e for e in study_entries(s)}
    assert [i.entry.study_instance_uid for i in items] == [
        mixed_urgent,
        mixed_routine,  # arrived before the other not-assessed study
        alone,
        routine,
    ]
    by_uid = {i.entry.study_instance_uid: i for i in items}
    assert by_uid[mixed_urgent].band == "URGENT" and not by_uid[mixed_urgent].not_assessed
    assert entries[mixed_urgent].not_assessed is not None
    assert entries[mixed_urgent].not_assessed.count == 1
    assert by_uid[mixed_routine].not_assessed and by_uid[mixed_routine].band is None
    assert entries[mixed_routine].not_assessed is not None
    assert entries[mixed_routine].not_assessed.reason == "inverted"
    assert entries[mixed_routine].not_assessed.detail == not_assessable_detail("inverted")
    # The study's prediction (what feedback is linked to) is its assessable image's,
    # whose score is the study's: the not-assessed image's audit score (0.97) is not.
    assert entries[mixed_routine].score == 0.2 and entries[mixed_routine].band == "ROUTINE"
    assert entries[mixed_routine].result_id != entries[mixed_routine].not_assessed.result_id
    assert entries[alone].score is None and entries[alone].band is None
    assert entries[alone].not_assessed is not None
    assert entries[alone].result_id == entries[alone].not_assessed.result_id
    assert by_uid[routine].band == "ROUTINE" and not by_uid[routine].not_assessed
