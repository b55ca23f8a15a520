"""End-to-end speed of the daemon with real peers, measured side by side in one run.

1. Latency: a 2500x2048 16-bit DX sent by DCMTK's storescu until its Secondary Capture
   arrives at a DCMTK storescp destination, 50 studies one at a time: p50/p95.
   Targets on a 2-core machine: p50 <= 0.8 s, p95 <= 1.5 s.
2. Burst: 200 such studies from 4 concurrent storescu: all acknowledged, none lost,
   all delivered; completed studies per second (target >= 3), and ingest throughput
   in MB/s against a plain DCMTK storescp receiving the same burst in the same run
   (target ratio >= 0.8; ChestAid fsyncs every file and its database, storescp does not).

    .venv/bin/python benchmarks/bench_e2e.py [--studies 50] [--burst 200] [--senders 4]

Prints a table; exits non-zero when an instance is lost (never for a missed target).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
from pydicom.uid import generate_uid

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from chestaid.sample import synthetic_dx  # noqa: E402
from tests.daemon_harness import Daemon, answers_echo, free_port, wait_until  # noqa: E402

SC_CLASS = "1.2.840.10008.5.1.4.1.1.7"


def make_studies(directory: Path, count: int, *, seed: int = 0) -> list[tuple[Path, str]]:
    """``count`` 2500x2048 16-bit DX files, each its own study; (path, SOP Instance UID)."""
    directory.mkdir(parents=True, exist_ok=True)
    base = synthetic_dx(rows=2500, cols=2048, bits_stored=16, seed=seed)
    out = []
    for i in range(count):
        base.StudyInstanceUID, base.SeriesInstanceUID = generate_uid(), generate_uid()
        base.SOPInstanceUID = generate_uid()
        base.file_meta.MediaStorageSOPInstanceUID = base.SOPInstanceUID
        path = directory / f"{i:04d}.dcm"
        base.save_as(path, enforce_file_format=True)
        out.append((path, str(base.SOPInstanceUID)))
    return out


@dataclass
class Destination:
    """storescp printing each received file's name as soon as it is written.

    ``plain`` runs it as the ingest baseline instead: a process per association
    (``--fork``, its fastest way to take concurrent senders) and no command per file.
    """

    directory: Path
    ae_title: str = "PACS"
    plain: bool = False
    port: int = field(default_factory=free_port)
    arrivals: dict[str, float] = field(default_factory=dict)
    process: subprocess.Popen[str] | None = None
    changed: threading.Condition = field(default_factory=threading.Condition)

    def start(self) -> Destination:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [
                "storescp",
                "-aet",
                self.ae_title,
                "-od",
                str(self.directory),
                *(["--fork"] if self.plain else ["-xcr", "echo #f", "-xs"]),
                str(self.port),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            bufsize=1,
        )
        threading.Thread(target=self._read, daemon=True).start()
        wait_until(
            lambda: answers_echo(self.ae_title, self.port),
            timeout=30,
            what=f"storescp on port {self.port} to answer C-ECHO",
        )
        return self

    def _read(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        for line in self.process.stdout:
            name = line.strip()
            if name:
                with self.changed:
                    self.arrivals[name] = time.monotonic()
                    self.changed.notify_all()

    def wait_count(self, n: int, timeout: float) -> bool:
        with self.changed:
            return self.changed.wait_for(lambda: len(self.arrivals) >= n, timeout)

    def destination(self) -> dict[str, object]:
        return {"name": "pacs", "ae_title": self.ae_title, "host": "127.0.0.1", "port": self.port}

    def sc_arrivals(self) -> dict[str, float]:
        """Source SOP Instance UID -> arrival time of its Secondary Capture."""
        out = {}
        for name, t in list(self.arrivals.items()):
            ds = pydicom.dcmread(self.directory / name, stop_before_pixels=True)
            if ds.SOPClassUID == SC_CLASS:
                out[str(ds.SourceImageSequence[0].ReferencedSOPInstanceUID)] = t
        return out

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)


def send(files: Sequence[Path], port: int, called: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            "storescu",
            "-v",
            "-aet",
            "MODALITY",
            "-aec",
            called,
            "127.0.0.1",
            str(port),
            *map(str, files),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def burst(files: Sequence[Path], port: int, called: str, senders: int) -> tuple[float, int]:
    """Send ``files`` from ``senders`` concurrent storescu; (seconds until all acked, acks)."""
    chunks = [list(files[i::senders]) for i in range(senders)]
    start = time.monotonic()
    procs = [send(chunk, port, called) for chunk in chunks]
    outputs = [p.communicate()[0] for p in procs]
    elapsed = time.monotonic() - start
    acks = sum(o.count("Received Store Response (Success)") for o in outputs)
    return elapsed, acks


def percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--studies", type=int, default=50)
    parser.add_argument("--burst", type=int, default=200)
    parser.add_argument("--senders", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2, help="PyTorch threads of the daemon")
    args = parser.parse_args()
    for tool in ("storescu", "storescp", "echoscu"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} not found: install the Debian package 'dcmtk'")

    work = Path(tempfile.mkdtemp(prefix="chestaid-bench-e2e-"))
    lost = False
    try:
        print(f"generating {args.studies + args.burst} 2500x2048 16-bit DX files ...", flush=True)
        latency_files = make_studies(work / "latency", args.studies, seed=1)
        burst_files = make_studies(work / "burst", args.burst, seed=2)
        megabytes = sum(p.stat().st_size for p, _ in burst_files) / 1e6

        pacs = Destination(work / "pacs").start()
        daemon = Daemon(
            work / "node",
            destinations=[pacs.destination()],
            sections={"model": {"threads": args.threads}, "logging": {"level": "WARNING"}},
        )
        daemon.start()
        try:
            # 1. latency, one study at a time
            latencies, acks = [], []
            for path, uid in latency_files:
                t0 = time.monotonic()
                done = send([path], daemon.port, daemon.ae_title).communicate()[0]
                acks.append(time.monotonic() - t0)
                if "Received Store Response (Success)" not in done:
                    print(f"not acknowledged: {path.name}\n{done}")
                    lost = True
                    continue
                with pacs.changed:
                    pacs.changed.wait_for(lambda uid=uid: _has_sc(pacs, uid), timeout=60)
                arrival = _sc_time(pacs, uid)
                if arrival is None:
                    print(f"no Secondary Capture for {uid}")
                    lost = True
                    continue
                latencies.append(arrival - t0)

            # 2. the burst, once every output of the latency run is in
            pacs.wait_count(2 * len(latency_files), timeout=120)
            before = len(pacs.arrivals)
            t0 = time.monotonic()
            ingest_s, burst_acks = burst(
                [p for p, _ in burst_files], daemon.port, daemon.ae_title, args.senders
            )
            all_out = pacs.wait_count(before + 2 * args.burst, timeout=600)
            complete_s = max(pacs.arrivals.values()) - t0
            if burst_acks != args.burst or not all_out:
                lost = True
            deadline = time.monotonic() + 60
            while not daemon.terminal() and time.monotonic() < deadline:
                time.sleep(0.1)
            states = daemon.query("SELECT state, count(*) FROM jobs GROUP BY state")
            deliveries = daemon.query("SELECT state, count(*) FROM deliveries GROUP BY state")
        finally:
            daemon.stop()
            pacs.stop()

        # 3. the same burst into a plain storescp, for the ingest baseline
        plain = Destination(work / "plain", plain=True).start()
        try:
            plain_s, plain_acks = burst(
                [p for p, _ in burst_files], plain.port, plain.ae_title, args.senders
            )
        finally:
            plain.stop()

        ours_mbs, plain_mbs = megabytes / ingest_s, megabytes / plain_s
        rows = [
            (
                "latency p50, storescu -> SC at storescp",
                f"{statistics.median(latencies):.3f} s",
                "<= 0.8 s",
            ),
            ("latency p95", f"{percentile(latencies, 95):.3f} s", "<= 1.5 s"),
            ("  of which acknowledgement p50", f"{statistics.median(acks):.3f} s", ""),
            (
                f"burst: acknowledged / sent ({args.senders} storescu)",
                f"{burst_acks} / {args.burst}",
                "all",
            ),
            ("burst: SC+SR delivered", f"{len(pacs.arrivals) - before} / {2 * args.burst}", "all"),
            ("burst: completed studies per second", f"{args.burst / complete_s:.2f}", ">= 3"),
            ("burst: ChestAid ingest", f"{ours_mbs:.0f} MB/s", ""),
            ("burst: plain storescp ingest", f"{plain_mbs:.0f} MB/s ({plain_acks} acked)", ""),
            ("burst: ingest ratio ChestAid / storescp", f"{ours_mbs / plain_mbs:.2f}", ">= 0.8"),
            ("jobs by state", ", ".join(f"{s} {n}" for s, n in states), ""),
            ("deliveries by state", ", ".join(f"{s} {n}" for s, n in deliveries), ""),
        ]
        width = max(len(r[0]) for r in rows)
        print(f"\n{'measure':<{width}} | {'result':<24} | target")
        print(f"{'-' * width}-|-{'-' * 24}-|-------")
        for name, value, target in rows:
            print(f"{name:<{width}} | {value:<24} | {target}")
        print(
            f"\n{megabytes:.0f} MB per burst; {args.studies} latency studies; model threads {args.threads}"
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if lost else 0


def _sc_time(pacs: Destination, uid: str) -> float | None:
    return pacs.sc_arrivals().get(uid)


def _has_sc(pacs: Destination, uid: str) -> bool:
    return _sc_time(pacs, uid) is not None


if __name__ == "__main__":
    sys.exit(main())
