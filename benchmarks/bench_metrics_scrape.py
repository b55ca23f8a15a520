"""How long a Prometheus scrape takes on a busy site: the database gauges at 50,000 jobs.

Seeds a migrated SQLite file with ``--jobs`` jobs (most done, some queued, running
and failed), two outputs each and one delivery per output (most delivered, some
pending and dead), then times the full exposition (the process's own metrics plus
the jobs, deliveries and model read from the database) against the same on an
empty database, in one run. Target: a scrape well under 100 ms at 50,000 jobs, as
Prometheus scrapes every 15 s by default.

    .venv/bin/python benchmarks/bench_metrics_scrape.py [--jobs 50000] [--repeat 50]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from sqlalchemy import insert

from daemon.db.migrate import upgrade
from daemon.db.models import (
    Delivery,
    DeliveryState,
    Instance,
    Job,
    JobState,
    Output,
    OutputKind,
    utcnow,
)
from daemon.db.session import make_engine, make_session_factory, writing
from daemon.metrics import DatabaseCollector, Exported
from daemon.serving import Serving
from daemon.settings import ModelSettings, PrioritySettings

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.bundles import unchecked_default_bundle  # noqa: E402


def _job_state(i: int) -> JobState:
    if i % 100 == 0:
        return JobState.QUEUED
    if i % 101 == 0:
        return JobState.FAILED
    if i % 997 == 0:
        return JobState.RUNNING
    return JobState.DONE


def _delivery_state(i: int) -> DeliveryState:
    if i % 50 == 0:
        return DeliveryState.PENDING
    if i % 333 == 0:
        return DeliveryState.DEAD
    return DeliveryState.DELIVERED


def seed(url: str, jobs: int) -> None:
    """Insert ``jobs`` instances and jobs, two outputs and deliveries each, in bulk."""
    engine = make_engine(url, busy_timeout=30)
    upgrade(engine)
    now = utcnow()
    instances, job_rows, outputs, deliveries = [], [], [], []
    for i in range(1, jobs + 1):
        when = now - timedelta(seconds=i)
        uid = f"1.2.826.0.1.3680043.10.2.{i}"
        instances.append(
            {
                "id": i,
                "sop_instance_uid": f"{uid}.1",
                "sop_class_uid": "1.2.840.10008.5.1.4.1.1.1.1",
                "study_instance_uid": uid,
                "series_instance_uid": f"{uid}.0",
                "transfer_syntax_uid": "1.2.840.10008.1.2.1",
                "modality": "DX",
                "spool_name": None,
                "size_bytes": 10_000_000,
                "calling_ae_title": "MODALITY",
                "peer_address": "127.0.0.1",
                "requested_priority": "MEDIUM",
                "received_at": when,
            }
        )
        job_rows.append(
            {
                "id": i,
                "instance_id": i,
                "state": _job_state(i),
                "attempts": 1,
                "created_at": when,
                "updated_at": when,
            }
        )
        for k, kind in enumerate((OutputKind.SECONDARY_CAPTURE, OutputKind.STRUCTURED_REPORT)):
            n = 2 * i + k
            outputs.append(
                {
                    "id": n,
                    "job_id": i,
                    "kind": kind,
                    "sop_instance_uid": f"{uid}.9.{k}",
                    "sop_class_uid": "1.2.840.10008.5.1.4.1.1.7",
                    "series_instance_uid": f"{uid}.9",
                    "file_name": f"{n}.dcm",
                    "size_bytes": 1_000_000,
                    "created_at": when,
                }
            )
            deliveries.append(
                {
                    "id": n,
                    "output_id": n,
                    "destination": "pacs",
                    "state": _delivery_state(n),
                    "attempts": 1,
                    "next_attempt_at": when,
                    "created_at": when,
                }
            )
    sessions = make_session_factory(engine)
    with writing(sessions) as session:
        for model, rows in (
            (Instance, instances),
            (Job, job_rows),
            (Output, outputs),
            (Delivery, deliveries),
        ):
            session.execute(insert(model), rows)
    engine.dispose()


def timed(directory: Path, jobs: int, repeat: int) -> tuple[float, float, int]:
    """p50 and max milliseconds of a full exposition, and its size in bytes."""
    url = f"sqlite:///{directory / f'jobs-{jobs}.db'}"
    seed(url, jobs) if jobs else upgrade(make_engine(url, busy_timeout=30))
    engine = make_engine(url, busy_timeout=30)
    sessions = make_session_factory(engine)
    serving = Serving(
        ModelSettings(bundle=unchecked_default_bundle()), PrioritySettings().bands, sessions
    )
    exported = Exported(DatabaseCollector(sessions, serving))
    size = len(exported.exposition())  # the first reads the manifest
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        exported.exposition()
        times.append(1000 * (time.perf_counter() - t0))
    engine.dispose()
    return statistics.median(times), max(times), size


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="chestaid-bench-scrape-") as work:
        directory = Path(work)
        t0 = time.monotonic()
        busy = timed(directory, args.jobs, args.repeat)
        seeded_s = time.monotonic() - t0
        empty = timed(directory, 0, args.repeat)
    print(f"\n{'database':<32} | {'p50 ms':>7} | {'max ms':>7} | bytes")
    print(f"{'-' * 32}-|---------|---------|------")
    print(f"{'empty':<32} | {empty[0]:>7.1f} | {empty[1]:>7.1f} | {empty[2]}")
    label = f"{args.jobs} jobs, {2 * args.jobs} deliveries"
    print(f"{label:<32} | {busy[0]:>7.1f} | {busy[1]:>7.1f} | {busy[2]}")
    print(
        f"\nratio busy / empty (p50): {busy[0] / empty[0]:.1f}x; target: p50 < 100 ms; "
        f"{args.repeat} scrapes each; seeding and timing took {seeded_s:.0f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
