"""Recalibration on local feedback: fit a pending version, activate it, the worker's
model picks it up without a restart, and the bundle's calibration comes back on demand."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from sqlalchemy import select

from chestaid.calibration import TemperatureScaling, calibrator_from_dict, sigmoid
from chestaid.inference import Scorer
from chestaid.models import build_model
from chestaid.preprocess import PreprocessSpec
from chestaid.threshold import governed_threshold
from daemon import audit
from daemon.db.models import CalibrationState, CalibrationVersion, FeedbackLabel
from daemon.db.session import SessionFactory, writing
from daemon.feedback import record_feedback
from daemon.recalibration import (
    RecalibrationError,
    activate,
    deactivate,
    fit_local_calibration,
)
from daemon.serving import ActiveModel, PriorityBands, Serving
from daemon.settings import ModelSettings, PrioritySettings
from tests.daemon_harness import record_scored

BANDS = list(PrioritySettings().bands)


def _site(sessions: SessionFactory, n: int, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` scored, labelled studies from a site whose logits are shifted by +3.

    Returns:
        Their logits and labels.
    """
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    logits = (2 * labels - 1) * 2.0 + rng.normal(0, 1.2, n) + 3.0
    for i, (y, z) in enumerate(zip(labels, logits, strict=True)):
        score = float(sigmoid(z))
        study = record_scored(
            sessions,
            f"9.{seed}.{i}",
            logit=float(z),
            score=score,
            above=score >= 0.5,
            model_version="test-1",
        )
        label = FeedbackLabel.PNEUMONIA if y else FeedbackLabel.NO_PNEUMONIA
        with writing(sessions) as s:
            record_feedback(s, study_instance_uid=study, label=label, user="dr")
    return logits, labels


@pytest.fixture(scope="module")
def base() -> ActiveModel:
    torch.manual_seed(0)
    scorer = Scorer(
        build_model("densenet121").eval(),
        TemperatureScaling(1.0),
        spec=PreprocessSpec(input_size=64),
        threshold=0.5,
        model_version="test-1",
    )
    return ActiveModel(
        scorer=scorer, calibration_version=1, bands=PriorityBands.resolve(BANDS, 0.5)
    )


def test_too_few_cases_is_refused(sessions: SessionFactory) -> None:
    _site(sessions, 20)
    with (
        pytest.raises(RecalibrationError, match="20 labelled studies"),
        writing(sessions) as s,
    ):
        fit_local_calibration(
            s,
            model_version="test-1",
            bundle_calibration_version=1,
            target_sensitivity=0.9,
            min_cases=100,
            user="admin",
        )


def test_fit_activate_pick_up_and_roll_back(sessions: SessionFactory, base: ActiveModel) -> None:
    logits, labels = _site(sessions, 160)
    provider = Serving(ModelSettings(), BANDS, sessions, base=base)
    assert provider() is base
    with writing(sessions) as s:
        row = fit_local_calibration(
            s,
            model_version="test-1",
            bundle_calibration_version=1,
            target_sensitivity=0.9,
            min_cases=100,
            user="admin",
        )
        version, report = row.version, row.report
    assert version == 2 and row.state == CalibrationState.PENDING
    assert row.method == "platt"  # an intercept shift: temperature alone cannot fix it

    figures = json.loads(report)
    assert figures["ece_after_cross_validated"] < figures["ece_before"]
    assert figures["sensitivity_estimate"] >= 0.8
    # The bundle's rule, on the refitted calibrator's scores of these studies.
    with writing(sessions) as s:
        stored = s.scalars(select(CalibrationVersion)).one()
        calibrator = calibrator_from_dict(json.loads(stored.calibrator))
    expected = governed_threshold(calibrator.predict_proba(logits), labels, 0.9)
    assert row.threshold == expected.threshold == figures["governed"]["threshold"]
    assert figures["threshold_ci95"] == list(expected.threshold_ci95 or ())
    assert figures["governed"]["sensitivity_ci95"] == list(expected.sensitivity_ci95)
    assert provider() is base  # pending: nothing changes yet

    with writing(sessions) as s:
        activate(s, version=version, user="admin")
    in_use = provider()
    assert in_use.calibration_version == 2
    assert in_use.scorer.threshold == pytest.approx(row.threshold)
    assert in_use.scorer.model is base.scorer.model  # the network is not reloaded

    # A newer version activated in a running worker replaces the cached one; an older
    # one activated again comes back.
    with writing(sessions) as s:
        newer = fit_local_calibration(
            s,
            model_version="test-1",
            bundle_calibration_version=1,
            target_sensitivity=0.97,
            min_cases=100,
            user="admin",
        )
        activate(s, version=newer.version, user="admin")
    switched = provider()
    assert switched.calibration_version == newer.version == 3
    assert switched.scorer.threshold == pytest.approx(newer.threshold)
    with writing(sessions) as s:
        activate(s, version=version, user="admin")
    assert provider().calibration_version == 2
    assert provider().scorer.threshold == pytest.approx(row.threshold)

    with writing(sessions) as s:
        assert deactivate(s, model_version="test-1", user="admin") == 2
    assert provider() is base
    with writing(sessions) as s:
        actions = [e.action for e in audit.entries(s) if e.action.startswith("calibration.")]
    assert actions == [
        "calibration.fitted",
        "calibration.activated",
        "calibration.fitted",
        "calibration.activated",
        "calibration.activated",
        "calibration.deactivated",
    ]
