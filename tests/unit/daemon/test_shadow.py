"""Shadow mode: the setting, results marked as made in shadow with no deliveries, the
shadow period's report against labels worked out by hand, and monitoring unchanged."""

from __future__ import annotations

import math
import threading
from datetime import timedelta
from io import BytesIO
from pathlib import Path

import pytest
from sqlalchemy import select

from chestaid.errors import ConfigurationError
from daemon.db import queue
from daemon.db.models import (
    Delivery,
    FeedbackLabel,
    FeedbackSource,
    MonitoringAlert,
    Output,
    OutputKind,
    Result,
    utcnow,
)
from daemon.db.session import SessionFactory, writing
from daemon.feedback import record_feedback
from daemon.monitoring import run_monitoring
from daemon.serving import ActiveModel
from daemon.settings import MonitoringSettings, WorkerSettings, load_settings
from daemon.shadow import shadow_report
from daemon.spool import FileStore
from daemon.worker import Worker
from tests.daemon_harness import record_received, record_scored
from tests.dicom_factory import make_dx
from tests.scorers import active_model, tiny_net

Z95 = 1.959963984540054  # the normal quantile of 0.975


def _wilson(successes: int, n: int) -> tuple[float, float]:
    """The Wilson score interval, written out here apart from the code under test."""
    p = successes / n
    centre = (p + Z95**2 / (2 * n)) / (1 + Z95**2 / n)
    half = Z95 * math.sqrt(p * (1 - p) / n + Z95**2 / (4 * n * n)) / (1 + Z95**2 / n)
    return centre - half, centre + half


def _config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "chestaid.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_site_is_live_unless_it_says_shadow(tmp_path: Path) -> None:
    assert load_settings(_config(tmp_path, "")).site.mode == "live"
    assert not load_settings(_config(tmp_path, "")).site.shadow
    assert load_settings().site.mode == "live"  # the embedded default file
    shadow = load_settings(_config(tmp_path, '[site]\nmode = "shadow"\n'))
    assert shadow.site.shadow and shadow.site.mode == "shadow"


def test_a_bad_mode_fails_at_start_naming_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"site\.mode.*'quiet'"):
        load_settings(_config(tmp_path, '[site]\nmode = "quiet"\n'))


def test_the_environment_can_put_a_site_in_shadow(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CHESTAID_SITE__MODE", "shadow")
    assert load_settings(_config(tmp_path, "")).site.shadow


@pytest.fixture(scope="module")
def model() -> ActiveModel:
    return active_model(tiny_net())


def _worker(
    tmp_path: Path, sessions: SessionFactory, model: ActiveModel, *, shadow: bool
) -> Worker:
    return Worker(
        sessions=sessions,
        spool=FileStore(tmp_path / "spool"),
        outbox=FileStore(tmp_path / "outbox"),
        model=lambda: model,
        destinations={"pacs": frozenset({"sc", "sr"}), "ris": frozenset({"sr"})},
        # A study's SR is issued as soon as its image is scored (no settle wait).
        settings=WorkerSettings(poll_seconds=0.5, max_attempts=2, study_settle_seconds=0),
        owner="host:1:worker:test",
        shadow=shadow,
    )


def _receive(worker: Worker, sessions: SessionFactory, seed: int) -> None:
    ds = make_dx(rows=96, cols=80, seed=seed)
    buffer = BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    stored = worker.spool.write(buffer.getvalue())
    record_received(sessions, str(ds.SOPInstanceUID), spool_name=stored.name, size=stored.size)


def test_in_shadow_a_result_is_marked_its_outputs_built_and_nothing_delivered(
    tmp_path: Path, sessions: SessionFactory, model: ActiveModel
) -> None:
    worker = _worker(tmp_path, sessions, model, shadow=True)
    woke = threading.Event()
    worker.on_outputs = woke.set
    _receive(worker, sessions, seed=1)
    assert worker.process_next()
    with writing(sessions) as s:
        result = s.scalars(select(Result)).one()
        outputs = s.scalars(select(Output)).all()
        assert result.shadow
        # What would have been sent is there to inspect, in the outbox...
        assert sorted(o.kind.value for o in outputs) == ["sc", "sr"]
        assert all((tmp_path / "outbox" / o.file_name).is_file() for o in outputs)
        # ...and nothing is on its way anywhere.
        assert s.scalars(select(Delivery)).all() == []
    assert not woke.is_set()  # the sender is not woken


def test_live_results_are_not_shadow_and_are_delivered(
    tmp_path: Path, sessions: SessionFactory, model: ActiveModel
) -> None:
    worker = _worker(tmp_path, sessions, model, shadow=False)
    _receive(worker, sessions, seed=2)
    assert worker.process_next()
    with writing(sessions) as s:
        assert not s.scalars(select(Result)).one().shadow
        # SC and SR to the PACS, the SR to the RIS.
        assert len(s.scalars(select(Delivery)).all()) == 3


def test_a_shadow_result_gets_no_delivery_whatever_destinations_are_given(
    sessions: SessionFactory,
) -> None:
    job_id = record_received(sessions, "9.1", spool_name="x/9.1.dcm")
    with writing(sessions) as s:
        assert queue.claim_job(s, owner="w", lease_seconds=60, max_attempts=3) is not None
        assert queue.complete_job(
            s,
            job_id=job_id,
            owner="w",
            logit=1.0,
            score=0.7,
            threshold=0.5,
            above_threshold=True,
            priority="URGENT",
            model_version="m",
            calibration_version=1,
            outputs=[
                queue.NewOutput(
                    kind=OutputKind.STRUCTURED_REPORT,
                    sop_class_uid="1.2.840.10008.5.1.4.1.1.88.33",
                    sop_instance_uid="9.1.9",
                    series_instance_uid="9.1.8",
                    file_name="x/9.1.9.dcm",
                    size_bytes=10,
                )
            ],
            destinations=["pacs", "ris"],
            shadow=True,
        )
    with writing(sessions) as s:
        assert s.scalars(select(Result)).one().shadow
        assert len(s.scalars(select(Output)).all()) == 1
        assert s.scalars(select(Delivery)).all() == []


# The shadow studies, each with its call and label (None: no label yet); by hand:
# TP 3 (A, B, C), FN 1 (D), TN 4 (E-H), FP 2 (I, J); K indeterminate; L not assessed;
# M unlabelled. Sensitivity 3/4, specificity 4/6, PPV 3/5, NPV 4/5.
PNEUMONIA, CLEAR, UNSURE = (
    FeedbackLabel.PNEUMONIA,
    FeedbackLabel.NO_PNEUMONIA,
    FeedbackLabel.INDETERMINATE,
)
READER, REPORT = FeedbackSource.READER, FeedbackSource.REPORT
SHADOW_STUDIES = [
    ("A", True, PNEUMONIA, READER),
    ("B", True, PNEUMONIA, READER),
    ("C", True, PNEUMONIA, REPORT),
    ("D", False, PNEUMONIA, REPORT),
    ("E", False, CLEAR, READER),
    ("F", False, CLEAR, REPORT),
    ("G", False, CLEAR, REPORT),
    ("H", False, CLEAR, REPORT),
    ("I", True, CLEAR, READER),
    ("J", True, CLEAR, REPORT),
    ("K", True, UNSURE, READER),
    ("L", False, PNEUMONIA, READER),  # not assessable: counted apart
    ("M", True, None, None),
]


def _label(
    sessions: SessionFactory, study: str, label: FeedbackLabel, source: FeedbackSource
) -> None:
    with writing(sessions) as s:
        record_feedback(
            s,
            study_instance_uid=study,
            label=label,
            user="dr" if source == READER else "ris",
            source=source,
            evidence="consolidation" if source == REPORT else None,
        )


def test_the_shadow_report_compares_shadow_calls_with_the_labels(
    sessions: SessionFactory,
) -> None:
    start = utcnow() - timedelta(days=3)
    for index, (name, above, label, source) in enumerate(SHADOW_STUDIES):
        study = record_scored(
            sessions,
            f"7.{index}",
            logit=1.0 if above else -1.0,
            score=0.8 if above else 0.2,
            above=above,
            study_uid=f"shadow.{name}",
            when=start + timedelta(hours=index),
            not_assessable="featureless" if name == "L" else None,
            shadow=True,
        )
        if label is not None and source is not None:
            _label(sessions, study, label, source)
    # Live studies, labelled, count nowhere in the shadow report (one would be an FP).
    live = record_scored(sessions, "8.1", logit=1.0, score=0.8, above=True)
    _label(sessions, live, CLEAR, READER)
    record_scored(sessions, "8.2", logit=-1.0, score=0.2, above=False)

    with writing(sessions) as s:
        report = shadow_report(s, mode="shadow")
    assert (report.results, report.studies, report.unlabelled) == (13, 13, 1)
    assert report.first_scored_at == start
    assert report.last_scored_at == start + timedelta(hours=12)
    c = report.figures.confusion
    assert (c.tp, c.fn, c.tn, c.fp) == (3, 1, 4, 2)
    figures = report.to_dict()
    assert figures["mode"] == "shadow"
    assert (figures["feedback"], figures["labelled"]) == (12, 10)
    assert (figures["indeterminate"], figures["not_assessable"]) == (1, 1)
    # A, B, E, I, K, L by a reader; C, D, F, G, H, J from final reports.
    assert figures["by_source"] == {"reader": 6, "report": 6}
    for name, (hits, n) in {
        "sensitivity": (3, 4),
        "specificity": (4, 6),
        "ppv": (3, 5),
        "npv": (4, 5),
    }.items():
        assert figures[name]["value"] == pytest.approx(hits / n, abs=1e-6)
        low, high = _wilson(hits, n)
        assert figures[name]["ci95"] == [
            pytest.approx(low, abs=1e-6),
            pytest.approx(high, abs=1e-6),
        ]
    assert "model_version" not in figures and figures["first_scored_at"] is not None


def test_a_site_that_never_ran_in_shadow_has_an_empty_shadow_report(
    sessions: SessionFactory,
) -> None:
    live = record_scored(sessions, "8.1", logit=1.0, score=0.8, above=True)
    _label(sessions, live, PNEUMONIA, READER)
    with writing(sessions) as s:
        figures = shadow_report(s, mode="live").to_dict()
    assert (figures["results"], figures["feedback"], figures["labelled"]) == (0, 0, 0)
    assert figures["sensitivity"]["value"] is None and figures["first_scored_at"] is None


def test_monitoring_judges_shadow_results_as_it_judges_live_ones(
    sessions: SessionFactory,
) -> None:
    when = utcnow() - timedelta(days=1)
    for i in range(40):  # 40 confirmed pneumonias scored in shadow, 20 flagged
        study = record_scored(
            sessions, f"1.{i}", logit=1.0, score=0.7, above=i < 20, when=when, shadow=True
        )
        with writing(sessions) as s:
            record_feedback(s, study_instance_uid=study, label=PNEUMONIA, user="dr", now=when)
    with writing(sessions) as s:
        summary = run_monitoring(
            s,
            settings=MonitoringSettings(min_labelled=30, windows_days=[7]),
            model_version="m",
            target_sensitivity=0.9,
        )
    assert summary["alerts"] == 1
    with writing(sessions) as s:
        assert [a.kind for a in s.scalars(select(MonitoringAlert))] == ["sensitivity"]
