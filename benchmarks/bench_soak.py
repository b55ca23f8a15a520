"""Soak: a live daemon fed at a steady rate for minutes; memory and latency stay flat, nothing lost.

Starts the daemon (every role in one process, SQLite, the bundled model, its metrics
listener on loopback) with a DCMTK storescp as its PACS, and sends one study every
``--interval`` seconds with DCMTK's storescu (each its own association, as a
modality sends) for ``--minutes``. Every 5 s it samples the daemon's resident memory
(/proc) and every 15 s scrapes its /metrics as Prometheus would (so the scrape path
soaks too). At the end it waits for the queue to drain and prints, per minute of
sending: RSS, p50/p95 of receipt-to-delivery latency (from the database: the job's
receipt to its last output delivered), the load average, and sent / acknowledged /
scored / delivered studies. The verdict:

- memory: RSS of the last minute at most 5 % above that of minute ``--warmup`` (3);
- latency: p95 of the last 5 minutes at most 1.5x that of minutes 3-7;
- nothing lost: every acknowledged study scored and both its outputs delivered, and
  the PACS holding two objects per study; the metrics agree with the database.

    .venv/bin/python benchmarks/bench_soak.py [--minutes 20] [--interval 10] [--size 2048]

Exits non-zero when the verdict fails. Other work on the machine shows in the load
column: read the latency against it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from prometheus_client.parser import text_string_to_metric_families
from pydicom.uid import generate_uid

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from chestaid.sample import synthetic_dx  # noqa: E402
from tests.daemon_harness import Daemon, StoreSCP, free_port  # noqa: E402

RSS_EVERY_S = 5.0
SCRAPE_EVERY_S = 15.0


@dataclass(frozen=True)
class Sent:
    minute: int  # 1-based minute of sending
    uid: str
    acked: bool
    send_s: float


@dataclass(frozen=True)
class Outcome:
    state: str
    latency_s: float | None  # receipt to the last output delivered
    delivered: int
    outputs: int


def rss_bytes(pid: int) -> int:
    """Resident set size of a process (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the daemon's /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as answer:
        text = answer.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def when(value: object) -> datetime:
    """A timestamp column as read raw from SQLite (UTC)."""
    found = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return found if found.tzinfo else found.replace(tzinfo=UTC)


def feed(
    daemon: Daemon, work: Path, *, minutes: float, interval: float, size: int, out: list[Sent]
) -> None:
    """Send one new study every ``interval`` seconds for ``minutes``."""
    base = synthetic_dx(rows=size, cols=size, bits_stored=12, seed=3)
    start = time.monotonic()
    end = start + minutes * 60
    index = 0
    while (due := start + index * interval) < end:
        time.sleep(max(0.0, due - time.monotonic()))
        base.StudyInstanceUID, base.SeriesInstanceUID = generate_uid(), generate_uid()
        base.SOPInstanceUID = generate_uid()
        base.file_meta.MediaStorageSOPInstanceUID = base.SOPInstanceUID
        path = work / "study.dcm"
        base.save_as(path, enforce_file_format=True)
        t0 = time.monotonic()
        done = subprocess.run(
            ["storescu", "-v", "-aet", "MODALITY", "-aec", daemon.ae_title, "127.0.0.1",
             str(daemon.port), str(path)],
            capture_output=True,
            text=True,
            timeout=120,
        )  # fmt: skip
        acked = (
            done.returncode == 0
            and "Received Store Response (Success)" in done.stdout + done.stderr
        )
        minute = int((t0 - start) // 60) + 1
        out.append(Sent(minute, str(base.SOPInstanceUID), acked, time.monotonic() - t0))
        index += 1


def outcomes(daemon: Daemon) -> dict[str, Outcome]:
    """Per received SOP Instance UID: its job's state, latency and deliveries."""
    rows = daemon.query(
        "SELECT i.sop_instance_uid, j.state, j.created_at, max(d.delivered_at),"
        " sum(CASE WHEN d.state = 'delivered' THEN 1 ELSE 0 END), count(d.id)"
        " FROM instances i JOIN jobs j ON j.instance_id = i.id"
        " LEFT JOIN outputs o ON o.job_id = j.id LEFT JOIN deliveries d ON d.output_id = o.id"
        " GROUP BY i.sop_instance_uid, j.state, j.created_at"
    )
    found = {}
    for uid, state, received, delivered_at, delivered, outputs in rows:
        latency = (
            (when(delivered_at) - when(received)).total_seconds()
            if delivered_at is not None and delivered == outputs
            else None
        )
        found[uid] = Outcome(state, latency, int(delivered or 0), int(outputs))
    return found


def p(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=20.0)
    parser.add_argument("--interval", type=float, default=10.0, help="seconds between studies")
    parser.add_argument("--size", type=int, default=2048, help="rows and columns of each image")
    parser.add_argument("--threads", type=int, default=2, help="PyTorch threads of the daemon")
    parser.add_argument("--warmup", type=int, default=3, help="the minute memory is compared to")
    args = parser.parse_args()
    for tool in ("storescu", "storescp", "echoscu"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} not found: install the Debian package 'dcmtk'")

    work = Path(tempfile.mkdtemp(prefix="chestaid-soak-"))
    sent: list[Sent] = []
    rss: list[tuple[float, int]] = []  # (seconds since start, bytes)
    loads: list[tuple[float, float]] = []
    scrape_s: list[float] = []
    try:
        pacs = StoreSCP(work / "pacs").start()
        metrics_port = free_port()
        daemon = Daemon(
            work / "node",
            destinations=[pacs.destination()],
            sections={
                "model": {"threads": args.threads},
                "logging": {"level": "WARNING"},
                "metrics": {"listen": True, "port": metrics_port},
            },
        )
        daemon.start()
        assert daemon.process is not None
        pid = daemon.process.pid
        stop = threading.Event()
        start = time.monotonic()

        def sample() -> None:
            next_scrape = start
            while not stop.is_set():
                now = time.monotonic()
                rss.append((now - start, rss_bytes(pid)))
                loads.append((now - start, os.getloadavg()[0]))
                if now >= next_scrape:
                    t0 = time.monotonic()
                    scrape(metrics_port)
                    scrape_s.append(time.monotonic() - t0)
                    next_scrape += SCRAPE_EVERY_S
                stop.wait(RSS_EVERY_S)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            print(
                f"soak: one {args.size}x{args.size} study every {args.interval} s for "
                f"{args.minutes} min; daemon pid {pid}",
                flush=True,
            )
            feed(
                daemon,
                work,
                minutes=args.minutes,
                interval=args.interval,
                size=args.size,
                out=sent,
            )
            sent_end = time.monotonic()
            deadline = sent_end + 600
            while not daemon.terminal() and time.monotonic() < deadline:
                time.sleep(1.0)
            drain_s = time.monotonic() - sent_end
            stop.set()
            sampler.join()
            final = scrape(metrics_port)
            found = outcomes(daemon)
            received = len(pacs.files())
        finally:
            stop.set()
            daemon.stop()
            pacs.stop()

        minutes = max(s.minute for s in sent)
        by_minute: dict[int, list[Sent]] = defaultdict(list)
        for s in sent:
            by_minute[s.minute].append(s)

        def minute_of(seconds: float) -> int:
            return int(seconds // 60) + 1

        rss_by: dict[int, list[int]] = defaultdict(list)
        for t, value in rss:
            rss_by[minute_of(t)].append(value)
        load_by: dict[int, list[float]] = defaultdict(list)
        for t, value in loads:
            load_by[minute_of(t)].append(value)

        latency_by: dict[int, list[float]] = defaultdict(list)
        print(
            f"\n{'min':>3} | {'RSS MiB':>7} | {'p50 s':>6} | {'p95 s':>6} | {'load':>4} | "
            f"{'sent':>4} | {'acked':>5} | {'scored':>6} | {'delivered':>9}"
        )
        print("-" * 72)
        for m in range(1, minutes + 1):
            group = by_minute.get(m, [])
            acked = [s for s in group if s.acked]
            scored = [s for s in acked if s.uid in found and found[s.uid].state == "done"]
            delivered = [s for s in scored if found[s.uid].latency_s is not None]
            latency_by[m] = [float(found[s.uid].latency_s or 0.0) for s in delivered]
            mib = statistics.mean(rss_by[m]) / 2**20 if rss_by[m] else float("nan")
            load = statistics.mean(load_by[m]) if load_by[m] else float("nan")
            print(
                f"{m:>3} | {mib:>7.1f} | {p(latency_by[m], 50):>6.2f} | "
                f"{p(latency_by[m], 95):>6.2f} | {load:>4.1f} | {len(group):>4} | "
                f"{len(acked):>5} | {len(scored):>6} | {len(delivered):>9}"
            )

        warm = min(args.warmup, minutes)
        last = minutes
        growth = statistics.mean(rss_by[last]) / statistics.mean(rss_by[warm]) - 1
        base_minutes = range(warm, min(warm + 5, minutes + 1))
        last_minutes = range(max(1, minutes - 4), minutes + 1)
        p95_base = p([x for m in base_minutes for x in latency_by[m]], 95)
        p95_last = p([x for m in last_minutes for x in latency_by[m]], 95)
        acked_all = [s for s in sent if s.acked]
        lost = [
            s.uid
            for s in acked_all
            if s.uid not in found or found[s.uid].state != "done" or found[s.uid].latency_s is None
        ]
        cstore_ok = final.get(("chestaid_cstore_total", (("status", "0x0000"),)), -1)
        e2e_count = final.get(("chestaid_end_to_end_seconds_count", ()), -1)
        metrics_agree = cstore_ok == len(acked_all) and e2e_count == len(acked_all) - len(lost)
        checks = [
            (
                f"memory growth, minute {last} vs {warm}",
                f"{100 * growth:+.1f} %",
                "<= 5 %",
                growth <= 0.05,
            ),
            (
                f"p95 latency, minutes {last_minutes.start}-{last} vs "
                f"{base_minutes.start}-{base_minutes.stop - 1}",
                f"{p95_last:.2f} s vs {p95_base:.2f} s ({p95_last / p95_base:.2f}x)",
                "<= 1.5x",
                p95_last <= 1.5 * p95_base,
            ),
            (
                "lost (acked, not scored and delivered)",
                f"{len(lost)} of {len(acked_all)} acked ({len(sent)} sent)",
                "0",
                not lost and len(acked_all) == len(sent),
            ),
            (
                "objects at the PACS",
                f"{received} (2 per study: {2 * len(acked_all)})",
                "all",
                received == 2 * len(acked_all),
            ),
            (
                "metrics: C-STORE success / end-to-end count",
                f"{cstore_ok:.0f} / {e2e_count:.0f}",
                "= database",
                metrics_agree,
            ),
        ]
        width = max(len(c[0]) for c in checks)
        print(f"\n{'check':<{width}} | {'result':<36} | target | verdict")
        print(f"{'-' * width}-|-{'-' * 36}-|--------|--------")
        for name, value, target, ok in checks:
            print(f"{name:<{width}} | {value:<36} | {target:<6} | {'ok' if ok else 'FAILED'}")
        print(
            f"\ndrained {drain_s:.0f} s after the last send; scrape p50 "
            f"{1000 * p(scrape_s, 50):.0f} ms, max {1000 * max(scrape_s):.0f} ms "
            f"({len(scrape_s)} scrapes); send p95 {p([s.send_s for s in sent], 95):.2f} s; "
            f"{os.cpu_count()} CPUs, model threads {args.threads}"
        )
        return 0 if all(c[3] for c in checks) else 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
