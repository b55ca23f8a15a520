"""The reading side through the daemon's command line: studies sent by storescu appear
on the worklist, feedback takes them off, and the admin report and export reflect it."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from chestaid.bundle import read_manifest
from tests.bundles import unchecked_default_bundle
from tests.daemon_harness import Daemon, storescu, wait_until
from tests.dicom_factory import make_dx

pytestmark = pytest.mark.integration


def test_worklist_feedback_report_export_and_audit(tmp_path: Path) -> None:
    daemon = Daemon(tmp_path / "node")
    daemon.start()
    try:
        studies = []
        for seed in range(2):
            ds = make_dx(tmp_path / f"{seed}.dcm", rows=128, cols=128, seed=seed)
            studies.append(str(ds.StudyInstanceUID))
            assert storescu([tmp_path / f"{seed}.dcm"], daemon.port).returncode == 0
        wait_until(daemon.terminal, timeout=60, what="both studies scored")

        listed = json.loads(daemon.cli("worklist", "--format", "json").stdout)
        assert sorted(item["study_instance_uid"] for item in listed) == sorted(studies)
        assert [i["score"] for i in listed] == sorted((i["score"] for i in listed), reverse=True)

        daemon.cli("feedback", "record", studies[0], "--label", "pneumonia", "--user", "dr.a")
        daemon.cli(
            "feedback",
            "record",
            studies[0],
            "--label",
            "no_pneumonia",
            "--user",
            "dr.b",
            "--comment",
            "atelectasis",
        )
        daemon.cli("study", "read", studies[1], "--user", "dr.a")
        assert json.loads(daemon.cli("worklist", "--format", "json").stdout) == []

        groups = json.loads(
            daemon.cli("feedback", "report", "--since", "30d", "--format", "json").stdout
        )
        overall = groups[0]
        assert overall["feedback"] == 1 and overall["labelled"] == 1
        assert overall["tn"] + overall["fp"] == 1 and overall["tp"] + overall["fn"] == 0
        assert groups[1]["model_version"] == read_manifest(unchecked_default_bundle()).version

        rows = list(csv.DictReader(io.StringIO(daemon.cli("feedback", "export").stdout)))
        assert len(rows) == 1
        assert rows[0]["label"] == "no_pneumonia" and rows[0]["given_by"] == "dr.b"
        assert rows[0]["comment"] == "atelectasis"

        trail = daemon.cli("audit").stdout
        assert "feedback.given" in trail and "feedback.changed" in trail and "study.read" in trail

        summary = json.loads(daemon.cli("monitoring", "run").stdout)
        assert summary["windows"]["7"]["labelled"] == 1 and summary["alerts"] == 0
        refused = daemon.cli("calibration", "fit", "--user", "admin", check=False)
        assert refused.returncode == 1 and "1 labelled studies" in refused.stderr
        assert "(none)" in daemon.cli("calibration", "list").stdout

        bad = daemon.cli(
            "feedback", "record", "1.2.3.404", "--label", "pneumonia", "--user", "x", check=False
        )
        assert bad.returncode == 1 and "no scored study" in bad.stderr
    finally:
        daemon.stop()
