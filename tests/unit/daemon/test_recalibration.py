"""Recalibration on local feedback: fit a pending version, activate it, the worker's
model picks it up without a restart, and the bundle's calibration comes back on demand."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from sqlalchemy import select
from sqlalchemy.orm import Session

from chestaid.calibration import TemperatureScaling, calibrator_from_dict
from chestaid.inference import Scorer
from chestaid.models import build_model
from chestaid.preprocess import PreprocessSpec
from chestaid.threshold import governed_threshold
from daemon import audit
from daemon.db.models import CalibrationState, CalibrationVersion
from daemon.db.session import SessionFactory, writing
from daemon.recalibration import (
    RecalibrationError,
    activate,
    deactivate,
    fit_local_calibration,
    review,
)
from daemon.serving import ActiveModel, PriorityBands, Serving
from daemon.settings import CalibrationSettings, ModelSettings, PrioritySettings
from tests.calibration_cases import informative, label_studies

BANDS = list(PrioritySettings().bands)


def _site(sessions: SessionFactory, n: int, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` scored, labelled studies from a site whose logits are shifted by +3.

    Returns:
        Their logits and labels.
    """
    logits, labels = informative(n, seed=seed)
    label_studies(sessions, logits, labels, model_version="test-1", prefix=f"9.{seed}")
    return logits, labels


def _activate(s: Session, version: int) -> None:
    """Activate, confirming the count the review finds (as an admin would)."""
    found = review(s, version=version, bands=BANDS, settings=CalibrationSettings())
    assert found.preview is not None, found.reasons
    activate(
        s,
        version=version,
        user="admin",
        bands=BANDS,
        settings=CalibrationSettings(),
        confirm_changes=found.preview.changed,
    )


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
    assert figures["by_source"] == {"reader": 160, "report": 0}
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
        _activate(s, version)
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
        _activate(s, newer.version)
    switched = provider()
    assert switched.calibration_version == newer.version == 3
    assert switched.scorer.threshold == pytest.approx(newer.threshold)
    with writing(sessions) as s:
        _activate(s, version)
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
