"""Guardrails on local recalibration (issue 14, item 1), on a real SQLite file.

A fit on too few cases, or a degenerate one, is refused with its reasons and audited;
a stored version is checked again before activation however it was made; activation
needs the number of recent studies that would change band, counted again at that
moment, and is audited with the version, the one before, the counts and who did it.
"""

from __future__ import annotations

import json
from datetime import timedelta

import numpy as np
import pytest
from pydantic import ValidationError

from chestaid.calibration.guardrails import (
    HARD_FLOORS,
    FitFacts,
    calibrator_reasons,
    fit_reasons,
)
from daemon import audit, calibration_review, recalibration
from daemon.db.models import CalibrationState, utcnow
from daemon.db.session import SessionFactory, reading, writing
from daemon.recalibration import (
    CalibrationRefusedError,
    ConfirmationMismatchError,
    RecalibrationError,
)
from daemon.settings import CalibrationSettings, PrioritySettings
from tests.calibration_cases import (
    facts,
    informative,
    label_studies,
    separable,
    stored_version,
    uninformative,
)
from tests.daemon_harness import record_scored
from tests.postgres_server import SQLITE_ONLY

MODEL = "test-1"
BANDS = list(PrioritySettings().bands)
SETTINGS = CalibrationSettings()
PLATT_IDENTITY = {"name": "platt", "a": 1.0, "b": 0.0}


def _fit(sessions: SessionFactory, **kwargs: object) -> int:
    return recalibration.fit_version(
        sessions,
        model_version=MODEL,
        bundle_calibration_version=1,
        target_sensitivity=0.9,
        min_cases=None,
        floors=HARD_FLOORS,
        user="admin",
        **kwargs,  # type: ignore[arg-type]
    )


def _refused(sessions: SessionFactory) -> list[str]:
    """The reasons a fit is refused for; checks nothing was stored and the refusal audited."""
    with pytest.raises(CalibrationRefusedError) as refused:
        _fit(sessions)
    with reading(sessions) as s:
        assert recalibration.versions(s) == []
        (entry,) = audit.entries(s, action_prefix="calibration.")
        assert entry.action == "calibration.refused" and entry.actor == "admin"
        assert json.loads(entry.detail or "{}")["reasons"] == refused.value.reasons
    return refused.value.reasons


@SQLITE_ONLY
@pytest.mark.parametrize(
    ("positives", "negatives", "expected"),
    [
        (20, 15, "35 labelled studies; at least 100 are needed"),
        (10, 100, "10 studies with pneumonia confirmed; at least 20 are needed"),
        (100, 12, "12 studies with pneumonia ruled out; at least 20 are needed"),
    ],
)
def test_too_few_cases_or_of_one_class_is_refused(
    sessions: SessionFactory, positives: int, negatives: int, expected: str
) -> None:
    logits, labels = informative(400, seed=3)
    chosen = np.concatenate(
        [np.flatnonzero(labels == 1)[:positives], np.flatnonzero(labels == 0)[:negatives]]
    )
    label_studies(sessions, logits[chosen], labels[chosen], model_version=MODEL, prefix="9")
    assert expected in _refused(sessions)


def test_the_minimums_cannot_be_set_below_the_floors(sessions: SessionFactory) -> None:
    for key, value in (("min_cases", 99), ("min_positives", 19), ("min_negatives", 10)):
        with pytest.raises(ValidationError):
            CalibrationSettings(**{key: value})
    raised = calibration_review.floors_of(CalibrationSettings(min_cases=150, min_positives=40))
    assert (raised.cases, raised.positives, raised.negatives) == (150, 40, 20)
    # A fit's own minimum may raise the floor, never lower it.
    with pytest.raises(RecalibrationError, match="cannot be set below 100"), reading(sessions) as s:
        recalibration.fit(
            s,
            model_version=MODEL,
            bundle_calibration_version=1,
            target_sensitivity=0.9,
            min_cases=10,
        )


@SQLITE_ONLY
def test_a_threshold_of_one_is_refused(sessions: SessionFactory) -> None:
    # The finding: separable cases gave a threshold of exactly 1.0, activated in one click.
    logits, labels = separable(40, 80)
    label_studies(sessions, logits, labels, model_version=MODEL, prefix="9")
    reasons = _refused(sessions)
    assert any("at an end of the 0-1 score scale" in r for r in reasons), reasons


@SQLITE_ONLY
def test_a_flat_slope_and_a_sensitivity_interval_below_target_are_refused(
    sessions: SessionFactory,
) -> None:
    logits, labels = uninformative(120)
    label_studies(sessions, logits, labels, model_version=MODEL, prefix="9")
    reasons = _refused(sessions)
    assert any("Platt slope" in r for r in reasons), reasons
    assert any("wholly below the target 0.900" in r for r in reasons), reasons


def test_the_pure_checks_name_each_degenerate_case() -> None:
    assert "reverses or erases" in calibrator_reasons({"name": "platt", "a": -0.5, "b": 0})[0]
    assert "near zero" in calibrator_reasons({"name": "platt", "a": 0.05, "b": 0})[0]
    assert "flattens" in calibrator_reasons({"name": "temperature", "temperature": 20.0})[0]
    assert "not a finite" in calibrator_reasons({"name": "temperature", "temperature": -1})[0]
    steps = {"name": "isotonic", "x": [0.0, 1.0, 2.0], "y": [0.1, 0.5, 0.9]}
    assert "3 distinct levels" in calibrator_reasons(steps)[0]
    assert calibrator_reasons(PLATT_IDENTITY) == []
    ok = FitFacts.from_dict(facts(0.5))
    assert fit_reasons(ok, HARD_FLOORS) == []
    at_top = FitFacts.from_dict(facts(0.99))
    assert "at or above the highest score" in fit_reasons(at_top, HARD_FLOORS)[0]
    at_bottom = FitFacts.from_dict(facts(0.01))
    assert "at or below the lowest score" in fit_reasons(at_bottom, HARD_FLOORS)[0]
    # 45 of 60 positives called: Wilson [0.63, 0.84] lies below 0.9.
    low = FitFacts.from_dict(facts(0.5, oof_true_positives=45, oof_false_negatives=15))
    assert "wholly below the target" in fit_reasons(low, HARD_FLOORS)[0]
    # 52 of 60: [0.76, 0.93] reaches 0.9, not refused (the evidence does not say it misses).
    near = FitFacts.from_dict(facts(0.5, oof_true_positives=52, oof_false_negatives=8))
    assert fit_reasons(near, HARD_FLOORS) == []


def test_a_good_fit_is_stored_and_previewed(sessions: SessionFactory) -> None:
    logits, labels = informative(160)
    label_studies(sessions, logits, labels, model_version=MODEL, prefix="9")
    version = _fit(sessions)
    with reading(sessions) as s:
        found = recalibration.review(s, version=version, bands=BANDS, settings=SETTINGS)
    assert found.reasons == [] and found.preview is not None
    assert found.preview.studies == 160


def test_a_version_made_another_way_is_checked_again_before_activation(
    sessions: SessionFactory,
) -> None:
    stored_version(
        sessions,
        version=2,
        model_version=MODEL,
        calibrator=PLATT_IDENTITY,
        threshold=1.0,
        report={"guardrail_facts": facts(1.0)},
    )
    stored_version(
        sessions,
        version=3,
        model_version=MODEL,
        calibrator=PLATT_IDENTITY,
        threshold=0.5,
        report={"ece_before": 0.1},
    )
    low = facts(0.5, oof_true_positives=30, oof_false_negatives=30)
    stored_version(
        sessions,
        version=4,
        model_version=MODEL,
        calibrator=PLATT_IDENTITY,
        threshold=0.5,
        report={"guardrail_facts": low},
    )
    flat = {"name": "platt", "a": 0.0, "b": 0.3}
    stored_version(sessions, version=5, model_version=MODEL, calibrator=flat, threshold=0.5)
    expected = {
        2: "at an end of the 0-1 score scale",
        3: "cannot be checked",
        4: "wholly below the target",
        5: "reverses or erases",
    }
    for version, reason in expected.items():
        with pytest.raises(CalibrationRefusedError, match=reason), writing(sessions) as s:
            recalibration.activate(
                s, version=version, user="admin", bands=BANDS, settings=SETTINGS, confirm_changes=0
            )
    with reading(sessions) as s:
        assert {v.state for v in recalibration.versions(s)} == {CalibrationState.PENDING}
        assert audit.entries(s, action_prefix="calibration.activated") == []


def _recent_studies(sessions: SessionFactory) -> None:
    """Studies whose band changes both ways under a Platt identity at threshold 0.5.

    They were scored at threshold 0.9 (so a score of 0.88 was ROUTINE) or 0.2.
    """
    old = utcnow() - timedelta(days=60)
    cases = [  # (uid, study, logit, stored above/band, when, model)
        ("1", "up", 2.0, False, None, MODEL),  # 0.88: ROUTINE -> URGENT
        ("2", "down", -2.0, True, None, MODEL),  # 0.12: URGENT -> ROUTINE
        ("3", "stays-up", 3.0, True, None, MODEL),
        ("4", "stays-down", -3.0, False, None, MODEL),
        ("5", "two-images", -1.0, False, None, MODEL),  # the study goes up by its
        ("6", "two-images", 1.5, False, None, MODEL),  # second image
        ("7", "too-old", 2.0, False, old, MODEL),  # outside the 30 days
        ("8", "other-model", 2.0, False, None, "other"),
    ]
    for uid, study, logit, above, when, model in cases:
        record_scored(
            sessions,
            f"7.{uid}",
            logit=logit,
            score=0.5,
            above=above,
            model_version=model,
            study_uid=study,
            when=when,
        )
    record_scored(
        sessions,
        "7.9",
        logit=4.0,
        score=0.98,
        above=False,
        model_version=MODEL,
        study_uid="not-assessed",
        not_assessable="lateral",
    )


def test_the_preview_counts_band_changes_both_ways(sessions: SessionFactory) -> None:
    _recent_studies(sessions)
    stored_version(
        sessions, version=2, model_version=MODEL, calibrator=PLATT_IDENTITY, threshold=0.5
    )
    with reading(sessions) as s:
        found = recalibration.review(s, version=2, bands=BANDS, settings=SETTINGS)
    assert found.preview is not None
    p = found.preview
    assert (p.studies, p.changed, p.raised, p.lowered) == (5, 3, 2, 1)
    assert (p.flagged_before, p.flagged_after, p.not_compared) == (2, 3, 0)
    # A model with no recent studies: nothing would change.
    stored_version(
        sessions, version=3, model_version="unused", calibrator=PLATT_IDENTITY, threshold=0.5
    )
    with reading(sessions) as s:
        empty = recalibration.review(s, version=3, bands=BANDS, settings=SETTINGS).preview
    assert empty is not None and (empty.studies, empty.changed, empty.flagged_after) == (0, 0, 0)


def test_activation_needs_the_count_confirmed_and_is_audited(sessions: SessionFactory) -> None:
    _recent_studies(sessions)
    stored_version(
        sessions, version=2, model_version=MODEL, calibrator=PLATT_IDENTITY, threshold=0.5
    )
    for wrong in (None, 0, 2, 4):
        with (
            pytest.raises(ConfirmationMismatchError, match="change the band of 3 studies"),
            writing(sessions) as s,
        ):
            recalibration.activate(
                s, version=2, user="admin", bands=BANDS, settings=SETTINGS, confirm_changes=wrong
            )
    with writing(sessions) as s:
        row, seen = recalibration.activate(
            s, version=2, user="boss", bands=BANDS, settings=SETTINGS, confirm_changes=3
        )
        assert row.state == CalibrationState.ACTIVE and seen.changed == 3
    stored_version(
        sessions,
        version=3,
        model_version=MODEL,
        calibrator={"name": "platt", "a": 1.0, "b": -2.5},
        threshold=0.5,
    )
    with writing(sessions) as s:
        # Against the bands the studies were given: only "down" changes under v3.
        recalibration.activate(
            s, version=3, user="boss", bands=BANDS, settings=SETTINGS, confirm_changes=1
        )
        recalibration.deactivate(s, model_version=MODEL, user="boss")
    with reading(sessions) as s:
        entries = audit.entries(s, action_prefix="calibration.")
    first, second, rollback = entries
    assert (first.action, first.actor, first.subject) == ("calibration.activated", "boss", "v2")
    detail = json.loads(first.detail or "{}")
    assert detail["previous"] == "bundle" and detail["confirmed_changes"] == 3
    assert {k: detail["preview"][k] for k in ("changed", "raised", "lowered")} == {
        "changed": 3,
        "raised": 2,
        "lowered": 1,
    }
    assert json.loads(second.detail or "{}")["previous"] == 2
    assert rollback.action == "calibration.deactivated"
    assert json.loads(rollback.detail or "{}")["previous"] == 3
