"""How fast the web interface answers on a site with a year of studies.

Seeds a migrated SQLite file with ``--studies`` scored studies spread over 365 days
(``--open`` of them unread, on the worklist, with patient names and accession numbers;
a third of the rest with feedback, a calibration-free site), serves the real web role
(uvicorn on loopback, as the daemon does) and times each page and API call over HTTP
with a signed-in session. Prints a table; the targets are the reading side's: a
worklist page (first, deep or filtered), its refresh and an API page under half a
second at 50,000 open studies, the study page well under a second, the admin pages
under two.

    .venv/bin/python benchmarks/bench_web.py [--studies 70000] [--open 50000] [--repeat 20]
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

import httpx
from sqlalchemy import insert

from daemon import accounts
from daemon.db.migrate import upgrade
from daemon.db.models import (
    Feedback,
    FeedbackLabel,
    Instance,
    Job,
    JobState,
    Result,
    Study,
    StudyRead,
    UserRole,
    utcnow,
)
from daemon.db.session import make_engine, make_session_factory, writing
from daemon.heatmaps import encode_cam
from daemon.settings import Settings, StorageSettings, WebSettings
from daemon.web.server import WebServer

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.daemon_harness import free_port  # noqa: E402

PASSWORD = "benchmark passphrase"


def seed(url: str, *, studies: int, open_studies: int, model_version: str) -> list[str]:
    """Insert the studies in bulk; returns the UIDs of the open ones."""
    rng = random.Random(7)
    now = utcnow()
    cam = encode_cam(__import__("numpy").random.default_rng(1).random((7, 7)))
    engine = make_engine(url, busy_timeout=30)
    upgrade(engine)
    instances, jobs, results, feedback, reads, open_uids = [], [], [], [], [], []
    studies_rows = []
    for i in range(1, studies + 1):
        when = (
            now - timedelta(minutes=rng.uniform(0, 365 * 24 * 60))
            if i > open_studies
            else (now - timedelta(minutes=rng.uniform(0, 300)))
        )
        study = f"1.2.826.0.1.3680043.10.1.{i}"
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
                "spool_name": None,
                "size_bytes": 10_000_000,
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
                "model_version": model_version,
                "calibration_version": 1,
                "scored_at": when,
                "cam": cam,
                "image_mean": rng.gauss(0.5, 0.05),
                "image_std": rng.gauss(0.2, 0.02),
                "image_rows": 2500,
                "image_cols": 2048,
            }
        )
        high = rng.random() < 0.02
        rank = 0.0 if score >= 0.5 or high else 1.0
        studies_rows.append(
            {
                "id": i,
                "study_instance_uid": study,
                "patient_name": f"Synthetic^Patient{i:06d}",
                "patient_id": f"PID{i:07d}",
                "accession_number": f"ACC{i:08d}",
                "study_date": when.strftime("%Y%m%d"),
                "study_time": when.strftime("%H%M%S"),
                "patient_age": f"{rng.randint(18, 95):03d}Y",
                "patient_sex": rng.choice("MF"),
                "study_description": "CHEST PA",
                "modality": "DX" if i % 4 else "CR",
                "last_received_at": when,
                "arrived_at": when,
                "images": 1,
                "requested_priority": "HIGH" if high else "MEDIUM",
                "raised_by_sender": high and score < 0.5,
                "band": "URGENT" if score >= 0.5 else "ROUTINE",
                "band_rank": rank,
                "not_assessed": False,
                "unscored": False,
                "score": score,
                "logit": logit,
                "order_score": -score,
                "order_logit": -logit,
                "threshold": 0.5,
                "result_id": i,
                "not_assessed_count": 0,
                "model_version": model_version,
                "calibration_version": 1,
                "listed": i <= open_studies,
                "closed_at": None if i <= open_studies else when,
                "closed_reason": None if i <= open_studies else "read",
                "closed_by": None if i <= open_studies else "dr",
            }
        )
        if i <= open_studies:
            open_uids.append(study)
            continue
        reads.append({"study_instance_uid": study, "read_by": "dr", "read_at": when, "via": "x"})
        if i % 3 == 0:
            truth = rng.random() < score
            label = FeedbackLabel.PNEUMONIA if truth else FeedbackLabel.NO_PNEUMONIA
            feedback.append(
                {
                    "study_instance_uid": study,
                    "result_id": i,
                    "label": label,
                    "comment": None,
                    "given_by": "dr",
                    "created_at": when,
                    "updated_at": when,
                }
            )
    sessions = make_session_factory(engine)
    with writing(sessions) as session:
        for model, rows in (
            (Instance, instances),
            (Job, jobs),
            (Result, results),
            (StudyRead, reads),
            (Feedback, feedback),
            (Study, studies_rows),
        ):
            if rows:  # an all-open site has no reads
                session.execute(insert(model), rows)
        user, _ = accounts.create_user(
            session, username="bench", role=UserRole.ADMIN, actor="benchmark"
        )
        user.password_hash = accounts.hash_password(PASSWORD)
        user.must_change_password = False
    engine.dispose()
    return open_uids


def timed(client: httpx.Client, path: str, repeat: int) -> tuple[float, float, int]:
    """p50 and p95 seconds of GET ``path`` and the body size."""
    seconds, size = [], 0
    for _ in range(repeat):
        start = time.perf_counter()
        answer = client.get(path)
        seconds.append(time.perf_counter() - start)
        answer.raise_for_status()
        size = len(answer.content)
    seconds.sort()
    return statistics.median(seconds), seconds[max(0, math.ceil(0.95 * repeat) - 1)], size


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=70_000)
    parser.add_argument("--open", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="chestaid-bench-web-") as tmp:
        settings = Settings(
            storage=StorageSettings(var_dir=Path(tmp) / "var"),
            web=WebSettings(port=free_port(), secure_cookies=False),
        )
        from chestaid.bundle import read_manifest
        from daemon.serving import bundle_path

        model_version = read_manifest(bundle_path(settings.model)).version
        start = time.perf_counter()
        open_uids = seed(
            settings.storage.url,
            studies=args.studies,
            open_studies=args.open,
            model_version=model_version,
        )
        seeded = time.perf_counter() - start
        engine = make_engine(settings.storage.url, busy_timeout=30)
        server = WebServer(settings, make_session_factory(engine))
        server.start()
        host, port = server.address
        try:
            with httpx.Client(base_url=f"http://{host}:{port}", timeout=120) as client:
                start = time.perf_counter()
                page = client.get("/login")
                token = page.text.split('name="csrf_token" value="')[1].split('"')[0]
                signed = client.post(
                    "/login",
                    data={"username": "bench", "password": PASSWORD, "csrf_token": token},
                )
                sign_in = time.perf_counter() - start
                assert signed.status_code == 303, signed.text[:300]
                study = open_uids[len(open_uids) // 2]
                deep = max(1, args.open // 200 // 2)  # a page halfway down (200 a page)
                rows = [
                    ("worklist page", "/worklist", 0.5),
                    ("worklist refresh (rows)", "/worklist/rows", 0.5),
                    (f"worklist page {deep}", f"/worklist?page={deep}", 0.5),
                    ("worklist, band ROUTINE", "/worklist?band=ROUTINE", 0.5),
                    ("worklist, accession prefix", "/worklist?q=ACC0000012", 0.5),
                    ("worklist, waiting > 60 min", "/worklist/rows?waiting=60", 0.5),
                    ("API worklist page (100)", "/api/v1/worklist", 0.5),
                    ("API worklist page 50 (100)", "/api/v1/worklist?page=50", 0.5),
                    ("study page", f"/studies/{study}", 1.0),
                    (
                        "study heatmap PNG",
                        f"/studies/{study}/images/{int(study.rsplit('.', 1)[1])}/heatmap.png",
                        1.0,
                    ),
                    ("dashboard, 30 days", "/admin?period=30d", 2.0),
                    ("dashboard, 365 days", "/admin?period=365d", 2.0),
                    ("feedback report, all", "/admin/feedback?period=all", 2.0),
                    ("API report, all", "/api/v1/report", 2.0),
                    ("audit page", "/admin/audit", 2.0),
                ]
                print(
                    f"site: {args.studies} studies over 365 days, {args.open} open, "
                    f"{sum(1 for i in range(args.open + 1, args.studies + 1) if i % 3 == 0)} "
                    f"with feedback; seeded in {seeded:.1f} s; sign-in (Argon2id) {sign_in:.3f} s"
                )
                print(f"{'request':<28}{'p50 s':>9}{'p95 s':>9}{'KiB':>9}{'target s':>10}  ok")
                failed = False
                for name, path, target in rows:
                    p50, p95, size = timed(client, path, args.repeat)
                    ok = p95 <= target
                    failed |= not ok
                    print(
                        f"{name:<28}{p50:>9.3f}{p95:>9.3f}{size / 1024:>9.0f}{target:>10.1f}"
                        f"  {'yes' if ok else 'NO'}"
                    )
        finally:
            server.stop()
            engine.dispose()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
