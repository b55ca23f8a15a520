"""How fast the admin's lists answer on a site with a long history: the failed and
skipped images, the dead deliveries and the audit trail (page, day filter, CSV export).

Seeds a migrated SQLite file with ``--jobs`` jobs (a tenth failed, a tenth skipped, the
rest done) spread over a year, a dead delivery for every hundredth, and ``--audit``
audit entries over the same year; then times each page in process through the real app
(the test client; no network), with a signed-in admin. Prints a table (median and 95th
percentile in milliseconds). Targets: every page under 0.5 s, the capped export
(100,000 rows) under 5 s.

    .venv/bin/python benchmarks/bench_admin_lists.py [--jobs 200000] [--audit 300000] [--repeat 10]
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
    AuditEntry,
    Delivery,
    DeliveryState,
    Instance,
    Job,
    JobState,
    Output,
    OutputKind,
    UserRole,
    utcnow,
)
from daemon.db.session import make_engine, make_session_factory, writing

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.web_fixtures import Site  # noqa: E402


def seed(sessions: object, *, jobs: int, audit: int) -> None:
    """Bulk rows: instances and jobs, outputs with dead deliveries, audit entries."""
    now = utcnow()
    year = timedelta(days=365)
    instances, job_rows, outputs, deliveries = [], [], [], []
    for i in range(1, jobs + 1):
        when = now - year * (i / jobs)
        uid = f"1.2.826.0.1.3680043.10.2.{i}"
        state = (
            JobState.FAILED if i % 10 == 0 else JobState.SKIPPED if i % 10 == 1 else JobState.DONE
        )
        instances.append(
            {
                "id": i,
                "sop_instance_uid": f"{uid}.1",
                "sop_class_uid": "1.2.840.10008.5.1.4.1.1.1.1",
                "study_instance_uid": uid,
                "series_instance_uid": f"{uid}.0",
                "transfer_syntax_uid": "1.2.840.10008.1.2.1",
                "modality": "DX",
                "spool_name": f"x/{i}.dcm",
                "size_bytes": 1,
                "calling_ae_title": "MODALITY",
                "peer_address": "127.0.0.1",
                "requested_priority": "MEDIUM",
                "received_at": when,
            }
        )
        reason = None if state == JobState.DONE else "View Position is not a frontal (PA/AP) view"
        job_rows.append(
            {
                "id": i,
                "instance_id": i,
                "state": state,
                "attempts": 1,
                "reason": reason,
                "created_at": when,
                "updated_at": when,
                "finished_at": when,
            }
        )
        if i % 100 == 2:
            outputs.append(
                {
                    "id": i,
                    "job_id": i,
                    "kind": OutputKind.SECONDARY_CAPTURE,
                    "sop_class_uid": "1.2.840.10008.5.1.4.1.1.7",
                    "sop_instance_uid": f"{uid}.9",
                    "series_instance_uid": f"{uid}.8",
                    "file_name": f"{i}.dcm",
                    "size_bytes": 1,
                    "created_at": when,
                }
            )
            deliveries.append(
                {
                    "output_id": i,
                    "destination": "pacs",
                    "state": DeliveryState.DEAD,
                    "attempts": 5,
                    "next_attempt_at": when,
                    "last_status": 0xA700,
                    "last_error": "association rejected",
                    "created_at": when,
                }
            )
    entries = [
        {
            "at": now - year * (i / audit),
            "actor": f"user{i % 7}",
            "action": ("login", "feedback.recorded", "jobs.retried")[i % 3],
            "subject": f"s{i}",
            "detail": '{"n": 1}',
        }
        for i in range(1, audit + 1)
    ]
    with writing(sessions) as session:  # type: ignore[arg-type]
        for model, rows in (
            (Instance, instances),
            (Job, job_rows),
            (Output, outputs),
            (Delivery, deliveries),
            (AuditEntry, entries),
        ):
            for start in range(0, len(rows), 20_000):
                session.execute(insert(model), rows[start : start + 20_000])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=200_000)
    parser.add_argument("--audit", type=int, default=300_000)
    parser.add_argument("--repeat", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        engine = make_engine(f"sqlite:///{Path(tmp) / 'chestaid.db'}", busy_timeout=30)
        upgrade(engine)
        sessions = make_session_factory(engine)
        seed(sessions, jobs=args.jobs, audit=args.audit)
        site = Site.build(Path(tmp), sessions)
        browser, _ = site.browser(site.add_user("admin", UserRole.ADMIN))
        day = (utcnow() - timedelta(days=100)).date().isoformat()
        cases = [
            ("failed images, page 1", "/admin/images?state=failed", args.repeat),
            ("images, both, page 100", "/admin/images?page=100", args.repeat),
            ("images, one day", f"/admin/images?from={day}&to={day}", args.repeat),
            ("dead deliveries, page 1", "/admin/deliveries", args.repeat),
            ("audit, page 1", "/admin/audit", args.repeat),
            ("audit, page 1000", "/admin/audit?page=1000", args.repeat),
            (
                "audit, one day, one user",
                f"/admin/audit?from={day}&to={day}&actor=user3",
                args.repeat,
            ),
            ("audit CSV, everything (capped)", "/admin/audit.csv", max(1, args.repeat // 5)),
            ("api images, 500 a page", "/api/v1/images?limit=500", args.repeat),
        ]
        print(f"jobs {args.jobs}, audit entries {args.audit}")
        print(f"{'what':34} {'p50 ms':>9} {'p95 ms':>9} {'bytes':>11}")
        for name, path, repeat in cases:
            times, size = [], 0
            for _ in range(repeat):
                start = time.perf_counter()
                answer = browser.get(path)
                times.append((time.perf_counter() - start) * 1000)
                assert answer.status_code == 200, (path, answer.status_code)
                size = len(answer.content)
            times.sort()
            p95 = times[min(len(times) - 1, round(0.95 * (len(times) - 1)))]
            print(f"{name:34} {statistics.median(times):9.1f} {p95:9.1f} {size:11d}")
        engine.dispose()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
