"""The model in service has one room: after an admin activates a local calibration,
every role asks :class:`daemon.serving.Serving` and sees the new threshold, target and
bands at once; deactivating brings the bundle's back. (The web role and monitoring
kept the bundle's figures, read once at start, until a restart.)"""

from __future__ import annotations

import json
import typing
from pathlib import Path

import numpy as np
import pytest

from chestaid.bundle import BUILTIN_BUNDLES, builtin_bundle_path
from chestaid.calibration import TemperatureScaling
from chestaid.display import percent_text
from chestaid.errors import BundleError, ConfigurationError
from chestaid.inference import Scorer
from chestaid.runtimes import LOGIT_TOLERANCE
from chestaid.sample import synthetic_chest
from daemon import maintenance, recalibration
from daemon.db.models import CalibrationState, CalibrationVersion, FeedbackLabel, UserRole
from daemon.db.session import SessionFactory, writing
from daemon.feedback import record_feedback
from daemon.serving import Serving, bundle_path, load_active_model
from daemon.settings import (
    CalibrationSettings,
    ModelSettings,
    MonitoringSettings,
    PrioritySettings,
    Settings,
    StorageSettings,
    load_settings,
)
from tests.bundles import unchecked_default_bundle
from tests.calibration_cases import facts
from tests.daemon_harness import record_scored
from tests.web_fixtures import Site

LOCAL_THRESHOLD = 0.42
LOCAL_TARGET = 0.97
REPORT = {
    "ece_before": 0.08,
    "ece_after_cross_validated": 0.03,
    "sensitivity_estimate": 0.97,
    "sensitivity_ci95": [0.93, 0.99],
    "specificity_estimate": 0.8,
    "specificity_ci95": [0.74, 0.85],
    "threshold_ci95": [0.35, 0.5],
    "guardrail_facts": facts(LOCAL_THRESHOLD, target_sensitivity=LOCAL_TARGET),
}


def _local_version(sessions: SessionFactory, model_version: str, *, activate: bool) -> int:
    """A fitted local calibration (as ``fit_local_calibration`` stores one), activated."""
    with writing(sessions) as s:
        row = CalibrationVersion(
            version=7,
            model_version=model_version,
            method="temperature",
            calibrator=json.dumps(TemperatureScaling(1.5).to_dict()),
            threshold=LOCAL_THRESHOLD,
            target_sensitivity=LOCAL_TARGET,
            n_cases=200,
            report=json.dumps(REPORT),
            state=CalibrationState.PENDING,
            fitted_by="admin",
        )
        s.add(row)
        s.flush()
        if activate:
            bands, settings = PrioritySettings().bands, CalibrationSettings()
            found = recalibration.review(s, version=row.version, bands=bands, settings=settings)
            assert found.preview is not None, found.reasons
            recalibration.activate(
                s,
                version=row.version,
                user="admin",
                bands=bands,
                settings=settings,
                confirm_changes=found.preview.changed,
            )
        return row.version


def _serving(settings: Settings, sessions: SessionFactory) -> Serving:
    return Serving(settings.model, settings.priority.bands, sessions)


def test_the_current_figures_follow_activation_and_rollback(
    tmp_path: Path, sessions: SessionFactory
) -> None:
    settings = Settings(storage=StorageSettings(var_dir=tmp_path / "var"))
    serving = _serving(settings, sessions)
    bundle = serving.current()
    assert not bundle.local and bundle.threshold != LOCAL_THRESHOLD
    assert dict(bundle.bands.cutoffs)["URGENT"] == bundle.threshold

    version = _local_version(sessions, bundle.model_version, activate=True)
    now = serving.current()  # the same object, asked again: nothing cached
    assert now.local and now.calibration_version == version
    assert (now.threshold, now.target_sensitivity) == (LOCAL_THRESHOLD, LOCAL_TARGET)
    assert dict(now.bands.cutoffs)["URGENT"] == LOCAL_THRESHOLD
    assert now.bundle_calibration_version == bundle.calibration_version

    with writing(sessions) as s:
        recalibration.deactivate(s, model_version=bundle.model_version, user="admin")
    assert serving.current() == bundle


def test_monitoring_alerts_against_the_target_in_use(
    tmp_path: Path, sessions: SessionFactory
) -> None:
    """60 confirmed pneumonias, 54 flagged: sensitivity 0.90, Wilson upper bound 0.95.
    Against the bundle's target (0.90) that is no alert; against the activated local
    target (0.97) it is one."""
    settings = Settings(
        storage=StorageSettings(var_dir=tmp_path / "var"),
        monitoring=MonitoringSettings(min_labelled=30, windows_days=[7]),
    )
    serving = _serving(settings, sessions)
    served = serving.current()
    assert served.target_sensitivity < 0.95 < LOCAL_TARGET
    for i in range(60):
        study = record_scored(
            sessions,
            f"1.2.{i}",
            logit=1.0,
            score=0.7,
            above=i < 54,
            model_version=served.model_version,
        )
        with writing(sessions) as s:
            record_feedback(s, study_instance_uid=study, label=FeedbackLabel.PNEUMONIA, user="dr")

    before = maintenance.monitor(sessions, settings=settings, serving=serving)
    assert [a["kind"] for a in before["raised"]] == []
    _local_version(sessions, served.model_version, activate=True)
    after = maintenance.monitor(sessions, settings=settings, serving=serving)
    assert [a["kind"] for a in after["raised"]] == ["sensitivity"]
    assert f"target {LOCAL_TARGET:.2f}" in after["raised"][0]["message"]


def test_the_dashboard_draws_the_threshold_in_use(tmp_path: Path, sessions: SessionFactory) -> None:
    site = Site.build(tmp_path, sessions)
    client, _ = site.browser(site.add_user("admin", UserRole.ADMIN))
    bundle = site.context.serving.current()
    assert f">{percent_text(bundle.threshold)}<" in client.get("/admin").text

    _local_version(sessions, bundle.model_version, activate=True)
    page = client.get("/admin").text
    assert f'id="dash-threshold">{percent_text(LOCAL_THRESHOLD)}<' in page
    assert "local calibration v7" in page
    calibration = client.get("/admin/calibration").text
    assert "v7" in calibration and percent_text(LOCAL_THRESHOLD) in calibration


def test_the_configured_runtime_scores_the_served_model() -> None:
    # ONNX Runtime named in the settings: the served scorer runs it after it agreed with
    # PyTorch at load, and says so (what the logs and metrics report).
    pytest.importorskip("onnxruntime")
    model = ModelSettings(
        bundle=unchecked_default_bundle(), threads=1, runtime="onnxruntime", precision="f32"
    )
    active = load_active_model(model, PrioritySettings().bands)
    assert active.scorer.runtime_name == "onnxruntime-f32"
    (trial,) = active.scorer.runtime_trials
    assert trial.agreement is not None and trial.agreement.agrees
    reference = Scorer(
        active.scorer.model,
        active.scorer.calibrator,
        spec=active.scorer.spec,
        threshold=active.scorer.threshold,
        model_version="reference",
    )
    pixels = synthetic_chest(300, 260).astype(np.float32) / 4095.0
    assert active.scorer.score_pixels(pixels).logit == pytest.approx(
        reference.score_pixels(pixels).logit, abs=LOGIT_TOLERANCE
    )


def test_an_unknown_runtime_fails_naming_the_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CHESTAID_MODEL__RUNTIME", raising=False)  # the suite's own choice
    config = tmp_path / "chestaid.toml"
    config.write_text('[model]\nruntime = "tensorrt"\n', encoding="utf-8")
    with pytest.raises(ConfigurationError, match=r"model\.runtime"):
        load_settings(config)


def test_the_builtin_key_chooses_which_bundled_model_serves(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CHESTAID_MODEL__BUILTIN", raising=False)
    assert bundle_path(ModelSettings()) == builtin_bundle_path("pneumonia")
    config = tmp_path / "chestaid.toml"
    config.write_text('[model]\nbuiltin = "findings"\n', encoding="utf-8")
    chosen = bundle_path(load_settings(config).model)
    assert chosen == builtin_bundle_path("findings") != builtin_bundle_path("pneumonia")
    assert chosen.name == "findings_model"
    named = tmp_path / "bundle"
    assert bundle_path(ModelSettings(bundle=named, builtin="findings")) == named


def test_an_unknown_builtin_model_fails_naming_the_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CHESTAID_MODEL__BUILTIN", raising=False)
    config = tmp_path / "chestaid.toml"
    config.write_text('[model]\nbuiltin = "covid"\n', encoding="utf-8")
    with pytest.raises(ConfigurationError, match=r"model\.builtin"):
        load_settings(config)
    with pytest.raises(BundleError, match="no bundled model is called 'covid'"):
        builtin_bundle_path("covid")


def test_every_builtin_name_the_settings_accept_is_a_bundled_model() -> None:
    accepted = set(typing.get_args(ModelSettings.model_fields["builtin"].annotation))
    assert accepted == set(BUILTIN_BUNDLES)
    assert all((builtin_bundle_path(name) / "manifest.json").is_file() for name in accepted)
