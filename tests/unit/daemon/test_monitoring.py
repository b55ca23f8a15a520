"""Monitoring on a real database: performance alerts with Wilson bounds, label-free
drift by PSI, stored runs, a webhook received by a real HTTP server, and retention."""

from __future__ import annotations

import json
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from sqlalchemy import Engine, select

from daemon import maintenance
from daemon.db.models import FeedbackLabel, Instance, MonitoringAlert, MonitoringRun, utcnow
from daemon.db.session import SessionFactory, make_engine, make_session_factory, writing
from daemon.feedback import record_feedback
from daemon.heatmaps import ImageStatistics
from daemon.monitoring import (
    population_stability_index,
    run_monitoring,
    send_alerts,
)
from daemon.retention import purge_old_files
from daemon.serving import Serving
from daemon.settings import MonitoringSettings, Settings, StorageSettings
from daemon.spool import FileStore
from tests.daemon_harness import record_scored
from tests.postgres_server import SQLITE_ONLY

NOW = utcnow()


def _study(
    sessions: SessionFactory,
    uid: str,
    logit: float,
    *,
    above: bool,
    label: FeedbackLabel | None = None,
    days_ago: float = 1.0,
    spool_name: str | None = None,
    image: ImageStatistics | None = None,
    model_version: str = "m",
) -> None:
    when = NOW - timedelta(days=days_ago)
    study = record_scored(
        sessions,
        uid,
        logit=logit,
        score=float(1 / (1 + np.exp(-logit))),
        above=above,
        when=when,
        spool_name=spool_name,
        image=image,
        model_version=model_version,
    )
    if label is not None:
        with writing(sessions) as s:
            record_feedback(s, study_instance_uid=study, label=label, user="dr", now=when)


def test_psi_is_near_zero_for_the_same_distribution_and_large_for_a_shift() -> None:
    rng = np.random.default_rng(0)
    reference = rng.normal(0, 1, 2000)
    assert population_stability_index(reference, rng.normal(0, 1, 2000)) < 0.05
    assert population_stability_index(reference, rng.normal(1.5, 1, 2000)) > 0.5


def test_a_missed_sensitivity_raises_an_alert_and_is_stored(sessions: SessionFactory) -> None:
    for i in range(40):  # 40 confirmed pneumonias, only 20 flagged: sensitivity 0.5
        _study(sessions, f"1.{i}", 1.0, above=i < 20, label=FeedbackLabel.PNEUMONIA)
    for i in range(20):
        _study(sessions, f"2.{i}", -1.0, above=i < 10, label=FeedbackLabel.NO_PNEUMONIA)
    settings = MonitoringSettings(min_labelled=30, ppv_floor=0.9, windows_days=[7])
    with writing(sessions) as s:
        summary = run_monitoring(
            s, settings=settings, model_version="m", target_sensitivity=0.9, now=NOW
        )
    assert summary["alerts"] == 2
    with writing(sessions) as s:
        kinds = sorted(a.kind for a in s.scalars(select(MonitoringAlert)))
        run = s.scalars(select(MonitoringRun)).one()
    assert kinds == ["ppv", "sensitivity"]
    figures = json.loads(run.figures)
    assert figures["tp"] == 20 and figures["fn"] == 20 and figures["labelled"] == 60


def test_too_few_labels_raise_no_performance_alert(sessions: SessionFactory) -> None:
    for i in range(10):
        _study(sessions, f"1.{i}", 1.0, above=False, label=FeedbackLabel.PNEUMONIA)
    with writing(sessions) as s:
        summary = run_monitoring(
            s,
            settings=MonitoringSettings(min_labelled=30, windows_days=[7]),
            model_version="m",
            target_sensitivity=0.9,
            now=NOW,
        )
    assert summary["alerts"] == 0


class _Receiver(BaseHTTPRequestHandler):
    received: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Receiver.received.append(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *_: Any) -> None:
        return None


def _drifted_scores(sessions: SessionFactory, model_version: str = "m") -> None:
    """40 studies two months ago, then 40 this week scoring far higher: a drift alert."""
    rng = np.random.default_rng(1)
    for i, z in enumerate(rng.normal(0, 1, 40)):
        _study(sessions, f"1.{i}", float(z), above=False, days_ago=60, model_version=model_version)
    for i, z in enumerate(rng.normal(2.5, 1, 40)):
        _study(sessions, f"2.{i}", float(z), above=True, days_ago=1, model_version=model_version)


def test_drift_without_labels_alerts_and_posts_to_the_webhook(sessions: SessionFactory) -> None:
    _Receiver.received.clear()  # the class keeps what an earlier run (the other engine) got
    _drifted_scores(sessions)
    server = HTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=server.handle_request)
    thread.start()
    url = f"http://127.0.0.1:{server.server_port}/alerts"
    settings = MonitoringSettings(
        windows_days=[7], reference_studies=40, min_window_results=20, webhook_url=url
    )
    with writing(sessions) as s:
        summary = run_monitoring(
            s, settings=settings, model_version="m", target_sensitivity=0.9, now=NOW
        )
    assert _Receiver.received == [], "nothing is sent inside the transaction"
    assert send_alerts(settings, summary["raised"]) == 1
    thread.join(timeout=10)
    server.server_close()
    assert summary["alerts"] == 1 and summary["windows"][7]["psi"] > 0.25
    assert _Receiver.received and _Receiver.received[0]["kind"] == "drift"


class _Stalling(BaseHTTPRequestHandler):
    """A webhook that takes the request and answers only when the test lets it."""

    arrived: ClassVar[threading.Event] = threading.Event()
    release: ClassVar[threading.Event] = threading.Event()

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        _Stalling.arrived.set()
        _Stalling.release.wait(timeout=30)
        self.send_response(204)
        self.end_headers()

    def log_message(self, *_: Any) -> None:
        return None


def test_a_slow_webhook_never_holds_the_database(
    tmp_path: Path, engine: Engine, sessions: SessionFactory
) -> None:
    """The alert is posted after the monitoring run has committed: while the webhook
    hangs, the SCP and the worker can still write (a write lock held across the POST
    made the SCP answer 0xA700 to modalities)."""
    _Stalling.arrived.clear()  # set by an earlier run (the other engine)
    _Stalling.release.clear()
    server = HTTPServer(("127.0.0.1", 0), _Stalling)
    settings = Settings(
        storage=StorageSettings(var_dir=tmp_path / "var"),
        monitoring=MonitoringSettings(
            windows_days=[7],
            reference_studies=40,
            min_window_results=20,
            webhook_url=f"http://127.0.0.1:{server.server_port}/alerts",
        ),
    )
    served = Serving(settings.model, settings.priority.bands, sessions)
    _drifted_scores(sessions, served.current().model_version)
    serving = threading.Thread(target=server.handle_request)
    serving.start()
    results: list[dict[str, Any]] = []
    monitoring = threading.Thread(
        target=lambda: results.append(
            maintenance.monitor(sessions, settings=settings, serving=served)
        )
    )
    monitoring.start()
    try:
        assert _Stalling.arrived.wait(timeout=60), "the webhook was never called"
        other = make_engine(str(engine.url), busy_timeout=0.5)
        try:
            with writing(make_session_factory(other)) as s:  # takes the write lock
                runs = s.scalars(select(MonitoringRun)).all()
        finally:
            other.dispose()
        assert len(runs) == 1, "the run was committed before the webhook was called"
    finally:
        _Stalling.release.set()
        monitoring.join(timeout=60)
        serving.join(timeout=10)
        server.server_close()
    assert results and results[0]["alerts"] == 1


def test_retention_deletes_old_finished_images_and_keeps_the_rows(
    tmp_path: Path, sessions: SessionFactory
) -> None:
    spool = FileStore(tmp_path / "spool")
    old, new = spool.write(b"old"), spool.write(b"new")
    _study(sessions, "1.1", 0.0, above=False, days_ago=40, spool_name=old.name)
    _study(sessions, "1.2", 0.0, above=False, days_ago=1, spool_name=new.name)
    done = purge_old_files(
        sessions, spool=spool, outbox=FileStore(tmp_path / "outbox"), older_than_days=30, now=NOW
    )
    assert done == {"images": 1, "outputs": 0}
    assert not old.path.exists() and new.path.exists()
    with writing(sessions) as s:
        names = dict(s.execute(select(Instance.sop_instance_uid, Instance.spool_name)).all())
    assert names == {"1.1": None, "1.2": new.name}


def _images(
    sessions: SessionFactory,
    prefix: str,
    *,
    count: int,
    brightness: float,
    days_ago: float,
    seed: int,
) -> None:
    """Scored studies whose images have a mean brightness around ``brightness``.

    Every logit is the same, so only the image statistics can drift.
    """
    rng = np.random.default_rng(seed)
    for i in range(count):
        image = ImageStatistics(
            mean=float(rng.normal(brightness, 0.04)),
            std=float(rng.normal(0.2, 0.02)),
            rows=2048,
            cols=2048,
        )
        _study(sessions, f"{prefix}.{i}", 0.0, above=False, days_ago=days_ago, image=image)


def _monitor(sessions: SessionFactory, *, reference_studies: int) -> dict[str, Any]:
    settings = MonitoringSettings(
        windows_days=[7], reference_studies=reference_studies, min_window_results=20
    )
    with writing(sessions) as s:
        return run_monitoring(
            s, settings=settings, model_version="m", target_sensitivity=0.9, now=NOW
        )


def _run_figures(sessions: SessionFactory) -> dict[str, Any]:
    with writing(sessions) as s:
        figures: dict[str, Any] = json.loads(s.scalars(select(MonitoringRun)).one().figures)
    return figures


def _alert_messages(sessions: SessionFactory) -> list[tuple[str, str]]:
    with writing(sessions) as s:
        return [(a.kind, a.message) for a in s.scalars(select(MonitoringAlert))]


@SQLITE_ONLY
def test_brighter_images_raise_a_drift_alert_naming_the_statistic(
    sessions: SessionFactory,
) -> None:
    for i in range(30):  # scored before image statistics were kept: ignored
        _study(sessions, f"0.{i}", 0.0, above=False, days_ago=90)
    _images(sessions, "1", count=200, brightness=0.5, days_ago=60, seed=1)
    _images(sessions, "2", count=200, brightness=0.6, days_ago=1, seed=2)
    summary = _monitor(sessions, reference_studies=200)
    figures = _run_figures(sessions)
    assert figures["psi"] == 0.0  # the logits did not move
    assert figures["image_statistics_scored"] == 200
    assert figures["psi_image_mean"] > 1.0
    assert figures["psi_image_std"] < 0.25  # the contrast did not move
    assert summary["alerts"] == 1
    assert summary["windows"][7]["psi_image_mean"] == figures["psi_image_mean"]
    [(kind, message)] = _alert_messages(sessions)
    assert kind == "drift"
    assert message.startswith(f"image mean brightness PSI {figures['psi_image_mean']:.3f} ≥ 0.25")
    assert "over 7 days" in message and "first 200" in message


@SQLITE_ONLY
def test_images_of_the_same_distribution_raise_no_alert(sessions: SessionFactory) -> None:
    # 200 against 200: sampling noise alone gives a PSI around 0.1 (10 bins).
    _images(sessions, "1", count=200, brightness=0.5, days_ago=60, seed=1)
    _images(sessions, "2", count=200, brightness=0.5, days_ago=1, seed=3)
    summary = _monitor(sessions, reference_studies=200)
    figures = _run_figures(sessions)
    assert summary["alerts"] == 0 and _alert_messages(sessions) == []
    # Computed, and small: not skipped for want of data.
    assert figures["psi_image_mean"] is not None and figures["psi_image_mean"] < 0.25
    assert figures["psi_image_std"] is not None and figures["psi_image_std"] < 0.25


def test_image_drift_waits_for_enough_images_in_the_window(sessions: SessionFactory) -> None:
    for i in range(5):  # older results without statistics do not count towards the reference
        _study(sessions, f"0.{i}", 0.0, above=False, days_ago=90)
    _images(sessions, "1", count=20, brightness=0.3, days_ago=60, seed=1)
    _images(sessions, "2", count=19, brightness=0.7, days_ago=1, seed=2)
    first = _monitor(sessions, reference_studies=20)
    assert first["alerts"] == 0 and first["windows"][7]["psi_image_mean"] is None
    _images(sessions, "3", count=1, brightness=0.7, days_ago=1, seed=3)
    summary = _monitor(sessions, reference_studies=20)
    assert summary["windows"][7]["psi_image_mean"] > 0.25
    messages = [m for kind, m in _alert_messages(sessions) if kind == "drift"]
    assert any(m.startswith("image mean brightness PSI") for m in messages)
