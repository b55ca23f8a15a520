"""The daemon's command line shows scores a person can read and keeps numbers in JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from daemon.cli import main
from daemon.db.migrate import upgrade
from daemon.db.session import make_engine, make_session_factory
from daemon.settings import load_settings
from tests.daemon_harness import record_scored


def test_the_worklist_table_shows_a_saturated_score_below_its_threshold(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "chestaid.toml"
    config.write_text(f'[storage]\nvar_dir = "{tmp_path / "var"}"\n', encoding="utf-8")
    (tmp_path / "var").mkdir()
    engine = make_engine(load_settings(config).storage.url)
    upgrade(engine)
    record_scored(
        make_session_factory(engine),
        "1.2.1",
        logit=10.1,
        score=0.999961,
        threshold=0.999964,
        above=False,
    )
    engine.dispose()

    assert main(["worklist", "--config", str(config)]) == 0
    header, row = capsys.readouterr().out.splitlines()[:2]
    cells = dict(zip(header.split("\t"), row.split("\t"), strict=True))
    assert cells["score"] != cells["threshold"]
    assert float(cells["score"]) < float(cells["threshold"]), cells

    assert main(["worklist", "--config", str(config), "--format", "json"]) == 0
    (listed,) = json.loads(capsys.readouterr().out)
    assert (listed["score"], listed["threshold"]) == (0.999961, 0.999964)


def test_study_close_takes_a_study_read_elsewhere_off_the_worklist_audited(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "chestaid.toml"
    config.write_text(f'[storage]\nvar_dir = "{tmp_path / "var"}"\n', encoding="utf-8")
    (tmp_path / "var").mkdir()
    engine = make_engine(load_settings(config).storage.url)
    upgrade(engine)
    sessions = make_session_factory(engine)
    uid = record_scored(sessions, "1.2.1", logit=1.0, score=0.9, above=True)
    kept = record_scored(sessions, "1.2.2", logit=0.0, score=0.5, above=True)
    close = ["study", "close", uid, "--reason", "reported-elsewhere", "--user", "ris"]
    assert main([*close, "--config", str(config)]) == 0
    assert capsys.readouterr().out.strip() == "closed: reported-elsewhere"
    assert main([*close, "--config", str(config)]) == 0
    assert capsys.readouterr().out.strip() == "already off the worklist"
    assert main(["worklist", "--config", str(config), "--format", "json"]) == 0
    assert [r["study_instance_uid"] for r in json.loads(capsys.readouterr().out)] == [kept]
    assert main(["audit", "--config", str(config)]) == 0
    assert "study.closed" in capsys.readouterr().out
    # An unknown study, and a site that does not close studies this way: one line, exit 1.
    unknown = ["study", "close", "9.9", "--reason", "reported-elsewhere", "--user", "ris"]
    assert main([*unknown, "--config", str(config)]) == 1
    assert "no study 9.9" in capsys.readouterr().err
    config.write_text(
        config.read_text(encoding="utf-8") + "[worklist]\nclose_reported_elsewhere = false\n",
        encoding="utf-8",
    )
    refused = ["study", "close", kept, "--reason", "reported-elsewhere", "--user", "ris"]
    assert main([*refused, "--config", str(config)]) == 1
    assert "does not close studies" in capsys.readouterr().err
    # An identified export needs the user who asks for it, and is audited.
    assert main(["feedback", "export", "--identified", "--config", str(config)]) == 1
    assert "needs the user" in capsys.readouterr().err
    engine.dispose()


def test_the_feedback_report_table_counts_labels_by_source(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "chestaid.toml"
    config.write_text(f'[storage]\nvar_dir = "{tmp_path / "var"}"\n', encoding="utf-8")
    (tmp_path / "var").mkdir()
    engine = make_engine(load_settings(config).storage.url)
    upgrade(engine)
    sessions = make_session_factory(engine)
    uid = record_scored(sessions, "1.2.1", logit=1.0, score=0.9, above=True)
    engine.dispose()
    given = ["feedback", "record", uid, "--label", "pneumonia", "--user", "dr"]
    assert main([*given, "--config", str(config)]) == 0
    capsys.readouterr()
    assert main(["feedback", "report", "--config", str(config)]) == 0
    header, overall = capsys.readouterr().out.splitlines()[:2]
    cells = dict(zip(header.split("\t"), overall.split("\t"), strict=True))
    assert (cells["by_source.reader"], cells["by_source.report"]) == ("1", "0")
    assert cells["tp"] == "1"
