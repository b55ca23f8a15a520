"""The command line keeps the calibration guardrails: a degenerate fit is refused with its
reasons, and activation needs ``--confirm-changes N`` equal to the review's count."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from chestaid.bundle import default_bundle_path, read_manifest
from daemon import audit, recalibration
from daemon.cli import main
from daemon.db.migrate import upgrade
from daemon.db.models import CalibrationState
from daemon.db.session import SessionFactory, make_engine, make_session_factory, reading
from daemon.settings import load_settings
from tests.calibration_cases import label_studies, separable, stored_version
from tests.daemon_harness import record_scored


@pytest.fixture
def site(tmp_path: Path) -> tuple[Path, SessionFactory]:
    config = tmp_path / "chestaid.toml"
    config.write_text(f'[storage]\nvar_dir = "{tmp_path / "var"}"\n', encoding="utf-8")
    (tmp_path / "var").mkdir()
    engine = make_engine(load_settings(config).storage.url)
    upgrade(engine)
    return config, make_session_factory(engine)


def test_a_degenerate_fit_is_refused_on_the_command_line(
    site: tuple[Path, SessionFactory], capsys: pytest.CaptureFixture[str]
) -> None:
    config, sessions = site
    model = read_manifest(default_bundle_path()).version
    logits, labels = separable(40, 80)
    label_studies(sessions, logits, labels, model_version=model, prefix="9")
    assert main(["calibration", "fit", "--user", "admin", "--config", str(config)]) != 0
    err = capsys.readouterr().err
    assert "at an end of the 0-1 score scale" in err and "Traceback" not in err
    args = ["calibration", "fit", "--min-cases", "50", "--user", "admin", "--config", str(config)]
    assert main(args) != 0
    assert "cannot be set below 100" in capsys.readouterr().err


def test_activation_on_the_command_line_needs_the_count(
    site: tuple[Path, SessionFactory], capsys: pytest.CaptureFixture[str]
) -> None:
    config, sessions = site
    stored_version(
        sessions,
        version=2,
        model_version="m",
        calibrator={"name": "platt", "a": 1.0, "b": 0.0},
        threshold=0.5,
    )
    for uid, logit, above in (("1", 2.0, False), ("2", -2.0, True), ("3", 3.0, True)):
        record_scored(sessions, f"5.{uid}", logit=logit, score=0.5, above=above)

    assert main(["calibration", "review", "2", "--config", str(config)]) == 0
    shown = capsys.readouterr().out
    assert "2 would change band (1 up, 1 down)" in shown and "--confirm-changes 2" in shown

    activate = ["calibration", "activate", "2", "--user", "root", "--config", str(config)]
    with pytest.raises(SystemExit):  # argparse: the confirmation is required
        main(activate)
    capsys.readouterr()
    assert main([*activate, "--confirm-changes", "1"]) != 0
    assert "confirm 2" in capsys.readouterr().err
    with reading(sessions) as s:
        assert [v.state for v in recalibration.versions(s)] == [CalibrationState.PENDING]
    assert main([*activate, "--confirm-changes", "2"]) == 0
    assert "2 studies of the last 30 days" in capsys.readouterr().out
    with reading(sessions) as s:
        (entry,) = audit.entries(s, action_prefix="calibration.activated")
        assert entry.actor == "root"
        assert json.loads(entry.detail or "{}")["preview"]["changed"] == 2
