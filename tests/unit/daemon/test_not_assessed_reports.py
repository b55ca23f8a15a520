"""Not-assessable results in the feedback report, monitoring and recalibration: counted
apart, never in a rate, an ECE, a drift figure or a fit (real SQLite)."""

from __future__ import annotations

import json
from datetime import timedelta

import numpy as np
import pytest

from chestaid.calibration import sigmoid
from chestaid.metrics import ece
from daemon.db.models import FeedbackLabel, MonitoringRun, utcnow
from daemon.db.session import SessionFactory, writing
from daemon.feedback import labelled_cases, record_feedback, report
from daemon.heatmaps import ImageStatistics
from daemon.monitoring import outcome_counts, run_monitoring, study_logits
from daemon.recalibration import RecalibrationError, fit_local_calibration
from daemon.settings import MonitoringSettings
from tests.daemon_harness import record_scored

NOW = utcnow()
POS, NEG, IND = FeedbackLabel.PNEUMONIA, FeedbackLabel.NO_PNEUMONIA, FeedbackLabel.INDETERMINATE


def _study(
    sessions: SessionFactory,
    uid: str,
    logit: float,
    *,
    label: FeedbackLabel | None = None,
    not_assessable: str | None = None,
    days_ago: float = 1.0,
    image_mean: float = 0.5,
) -> None:
    when = NOW - timedelta(days=days_ago)
    score = float(sigmoid(logit))
    study = record_scored(
        sessions,
        uid,
        logit=logit,
        score=score,
        above=score >= 0.5,
        when=when,
        not_assessable=not_assessable,
        image=ImageStatistics(mean=image_mean, std=0.2, rows=64, cols=64),
    )
    if label is not None:
        with writing(sessions) as s:
            record_feedback(s, study_instance_uid=study, label=label, user="dr", now=when)


def test_feedback_on_not_assessed_studies_is_counted_apart_from_every_rate(
    sessions: SessionFactory,
) -> None:
    for n, (logit, label) in enumerate([(2.0, POS), (1.0, NEG), (-1.0, NEG), (-2.0, POS)]):
        _study(sessions, f"1.{n}", logit, label=label)  # TP, FP, TN, FN
    # Confident scores that would move every figure if they were counted.
    for n, (logit, label) in enumerate([(6.0, NEG), (-6.0, POS), (6.0, IND)]):
        _study(sessions, f"2.{n}", logit, label=label, not_assessable="unfamiliar")
    with writing(sessions) as s:
        cases = labelled_cases(s)
    overall = report(cases)[0]
    c = overall.confusion
    assert (c.tp, c.fp, c.tn, c.fn) == (1, 1, 1, 1)
    assert (overall.feedback, overall.labelled, overall.indeterminate) == (7, 4, 0)
    assert overall.not_assessable == 3
    judged = [x for x in cases if x.assessable]
    expected = ece(np.array([x.score for x in judged]), np.array([1, 0, 0, 1]), n_bins=10)
    assert overall.ece == pytest.approx(expected)
    exported = [x.to_dict() for x in cases]
    assert [(r["assessable"], r["not_assessable_reason"]) for r in exported[4:]] == [
        (False, "unfamiliar")
    ] * 3
    assert report(cases)[0].to_dict()["not_assessable"] == 3


def test_monitoring_leaves_them_out_of_drift_and_gives_their_rate(
    sessions: SessionFactory,
) -> None:
    # The site's first results were not assessable, with wild logits and images: had they
    # been the reference, or in the window, the drift figures would alarm.
    for i in range(25):
        _study(sessions, f"0.{i}", 9.0, not_assessable="featureless", days_ago=20, image_mean=0.0)
    logits = np.linspace(-3.0, 3.0, 20)
    for i, z in enumerate([*logits, *logits]):
        _study(sessions, f"1.{i}", float(z), image_mean=0.3 + 0.02 * (i % 20))
    for i, reason in enumerate(["noise", "noise", "noise", "inverted", "featureless"]):
        _study(sessions, f"2.{i}", -9.0, not_assessable=reason, image_mean=1.0)
    settings = MonitoringSettings(reference_studies=20, min_window_results=20, windows_days=[7])
    with writing(sessions) as s:
        summary = run_monitoring(
            s, settings=settings, model_version="m", target_sensitivity=0.9, now=NOW
        )
        figures = json.loads(s.query(MonitoringRun).one().figures)
    assert summary["alerts"] == 0
    assert figures["psi"] == pytest.approx(0.0, abs=1e-9)
    assert figures["psi_image_mean"] == pytest.approx(0.0, abs=1e-9)
    assert figures["scored"] == 40 and figures["image_statistics_scored"] == 40
    assert figures["results"] == 45 and figures["not_assessable_results"] == 5
    assert figures["not_assessable_rate"] == pytest.approx(5 / 45)
    assert figures["not_assessable_reasons"] == {"featureless": 1, "inverted": 1, "noise": 3}
    assert summary["windows"][7]["not_assessable_results"] == 5
    with writing(sessions) as s:
        everything = outcome_counts(s)
        window = outcome_counts(s, since=NOW - timedelta(days=7), model_version="m")
    assert (everything.results, everything.not_assessable) == (70, 30)
    assert window.rate == pytest.approx(5 / 45)
    with writing(sessions) as s:
        assert outcome_counts(s, model_version="other").rate is None


def test_recalibration_never_fits_on_not_assessable_results(sessions: SessionFactory) -> None:
    rng = np.random.default_rng(0)
    for i in range(20):
        _study(sessions, f"1.{i}", float(rng.normal(0, 2)), label=POS if i % 2 else NEG)
    for i in range(100):
        _study(sessions, f"2.{i}", 5.0, label=NEG, not_assessable="noise")
    with (
        pytest.raises(RecalibrationError, match="20 labelled studies"),
        writing(sessions) as s,
    ):
        fit_local_calibration(
            s,
            model_version="m",
            bundle_calibration_version=1,
            target_sensitivity=0.9,
            min_cases=100,
            user="admin",
        )


def test_monitoring_counts_studies_by_their_deciding_image(sessions: SessionFactory) -> None:
    # One study of three images: a not-assessable one, a low and a high frontal. It is
    # one study, assessed, decided by its highest frontal: one logit, no unjudged study.
    when = NOW - timedelta(days=1)
    for uid, logit, unjudged in (("3.1", 8.0, "noise"), ("3.2", -2.0, None), ("3.3", 1.5, None)):
        record_scored(
            sessions,
            uid,
            logit=logit,
            score=float(sigmoid(logit)),
            above=logit > 0,
            when=when,
            study_uid="study-3",
            not_assessable=unjudged,
        )
    _study(sessions, "4.1", 0.0, not_assessable="featureless")  # a study none of whose images was
    with writing(sessions) as s:
        outcomes = outcome_counts(s)
        logits = study_logits(s, model_version="m", since=None, first=None)
    assert (outcomes.results, outcomes.not_assessable) == (2, 1)
    assert outcomes.reasons == {"featureless": 1}
    assert logits.tolist() == [1.5]
