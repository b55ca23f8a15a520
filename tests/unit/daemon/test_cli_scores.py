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
