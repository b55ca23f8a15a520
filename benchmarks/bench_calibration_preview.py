"""How long the calibration review takes on a busy site, and how long activation holds
the write lock (it counts the band changes again inside its unit of work).

Seeds a migrated SQLite file with ``--studies`` scored studies, all inside the preview
window (the worst case: every study of the window is re-scored), stores a passing local
version, and times the review (a reading unit) and one activation (a writing unit).
Prints a table.

    .venv/bin/python benchmarks/bench_calibration_preview.py [--studies 1000 10000 50000]
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from sqlalchemy import insert

from daemon import recalibration
from daemon.db.migrate import upgrade
from daemon.db.models import Instance, Job, JobState, Result, utcnow
from daemon.db.session import make_engine, make_session_factory, reading, writing
from daemon.settings import CalibrationSettings, PrioritySettings

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.calibration_cases import stored_version  # noqa: E402

MODEL = "bench-1"


def seed(url: str, studies: int) -> None:
    """``studies`` scored studies of the last 29 days, one image each, in bulk."""
    rng = random.Random(7)
    now = utcnow()
    instances, jobs, results = [], [], []
    for i in range(1, studies + 1):
        when = now - timedelta(minutes=rng.uniform(0, 29 * 24 * 60))
        study = f"1.2.826.0.1.3680043.10.2.{i}"
        logit = rng.gauss(-1.0, 3.0)
        score = 1 / (1 + math.exp(-logit))
        instances.append(
            {
                "id": i,
                "sop_instance_uid": f"{study}.1",
                "sop_class_uid": "1.2.840.10008.5.1.4.1.1.1.1",
                "study_instance_uid": study,
                "series_instance_uid": f"{study}.0",
                "transfer_syntax_uid": "1.2.840.10008.1.2.1",
                "modality": "DX",
                "size_bytes": 1,
                "calling_ae_title": "MODALITY",
                "peer_address": "127.0.0.1",
                "requested_priority": "MEDIUM",
                "received_at": when,
            }
        )
        jobs.append(
            {
                "id": i,
                "instance_id": i,
                "state": JobState.DONE,
                "attempts": 1,
                "created_at": when,
                "updated_at": when,
                "finished_at": when,
            }
        )
        results.append(
            {
                "id": i,
                "job_id": i,
                "logit": logit,
                "score": score,
                "threshold": 0.5,
                "above_threshold": score >= 0.5,
                "priority": "URGENT" if score >= 0.5 else "ROUTINE",
                "model_version": MODEL,
                "calibration_version": 1,
                "scored_at": when,
            }
        )
    engine = make_engine(url, busy_timeout=30)
    upgrade(engine)
    with writing(make_session_factory(engine)) as session:
        for model, rows in ((Instance, instances), (Job, jobs), (Result, results)):
            session.execute(insert(model), rows)
    engine.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, nargs="+", default=[1_000, 10_000, 50_000])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    bands, settings = PrioritySettings().bands, CalibrationSettings()
    print("studies\treview p50 s\treview max s\tactivation s\tchanged")
    for n in args.studies:
        with tempfile.TemporaryDirectory(prefix="chestaid-bench-cal-") as tmp:
            url = f"sqlite:///{Path(tmp) / 'chestaid.db'}"
            seed(url, n)
            engine = make_engine(url, busy_timeout=30)
            sessions = make_session_factory(engine)
            stored_version(
                sessions,
                version=2,
                model_version=MODEL,
                calibrator={"name": "platt", "a": 1.1, "b": -0.4},
                threshold=0.5,
            )
            seconds = []
            for _ in range(args.repeat):
                start = time.perf_counter()
                with reading(sessions) as session:
                    found = recalibration.review(session, version=2, bands=bands, settings=settings)
                seconds.append(time.perf_counter() - start)
            assert found.preview is not None, found.reasons
            start = time.perf_counter()
            with writing(sessions) as session:
                recalibration.activate(
                    session,
                    version=2,
                    user="bench",
                    bands=bands,
                    settings=settings,
                    confirm_changes=found.preview.changed,
                )
            activation = time.perf_counter() - start
            engine.dispose()
            print(
                f"{n}\t{statistics.median(seconds):.3f}\t{max(seconds):.3f}\t"
                f"{activation:.3f}\t{found.preview.changed}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
