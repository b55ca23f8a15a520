"""End-to-end speed of the daemon with real peers, measured side by side in one run.

1. Latency: a 2500x2048 16-bit DX sent by DCMTK's storescu until its Secondary Capture
   arrives at a DCMTK storescp destination, 50 studies one at a time: p50/p95.
   Targets on a 2-core machine: p50 <= 0.8 s, p95 <= 1.5 s.
2. Burst: 200 such studies from 4 concurrent storescu: all acknowledged, none lost,
   all delivered; completed studies per second (target >= 3), and ingest throughput
   in MB/s against a plain DCMTK storescp receiving the same burst right after
   (target ratio >= 0.85; ChestAid fsyncs every file and its database, storescp does not).

With ``--compare TREE`` (another checkout of ChestAid, the previous release say) the
same scenario runs against both trees in the one run, their turns alternating: the
same files, the same configuration, the same bundle (the bundled default model of
this tree, without its not-assessable checks, which would set the synthetic images
aside), each daemon started from its own tree (``PYTHONPATH``). The settings whose
defaults differ between the trees are listed. Targets against the other tree: burst
completed studies per second >= 2x, latency p50 <= 0.6x; the ingest ratio to plain
storescp >= 0.85.

    .venv/bin/python benchmarks/bench_e2e.py [--studies 50] [--burst 200] [--senders 4]
    .venv/bin/python benchmarks/bench_e2e.py --compare ../previous-release [--rounds 1]

Prints a table; exits non-zero when an instance is lost (never for a missed target).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
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

from chestaid.bundle.manifest import governance_digest  # noqa: E402
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


@dataclass
class TreeDaemon(Daemon):
    """The harness's daemon, run from the given source tree (``PYTHONPATH``)."""

    tree: Path = ROOT
    # Each tree scores as it would in service: its own default runtime.
    pin_runtime: bool = False

    def env(self) -> dict[str, str]:
        return {**super().env(), "PYTHONPATH": str(self.tree)}


@dataclass
class Run:
    """One tree's turn: latency, then the burst, then plain storescp on the same burst."""

    latencies: list[float] = field(default_factory=list)
    acks: list[float] = field(default_factory=list)
    burst_acks: int = 0
    delivered: int = 0
    complete_s: float = float("nan")
    ingest_mbs: float = float("nan")
    plain_mbs: float = float("nan")
    states: str = ""
    deliveries: str = ""
    lost: bool = False


def unchecked_bundle(tree: Path, target: Path) -> Path:
    """A tree's bundled default model without its not-assessable checks (same weights).

    The manifest is edited as JSON, so any tree's loader reads it as it reads its own.
    """
    source = tree / "chestaid" / "default_model"
    target.mkdir(parents=True, exist_ok=True)
    for item in source.iterdir():
        if item.name not in ("manifest.json", "assessment.safetensors"):
            (target / item.name).symlink_to(item.resolve())
    manifest = json.loads((source / "manifest.json").read_text("utf-8"))
    manifest.pop("assessment", None)
    # The digest over the records that govern triage, now without the checks.
    manifest["governance_sha256"] = governance_digest(
        manifest["calibration"], manifest["threshold"]
    )
    (target / "manifest.json").write_text(json.dumps(manifest, indent=2), "utf-8")
    return target


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


def knows_settling(tree: Path) -> bool:
    """Whether a tree has ``worker.study_settle_seconds`` (one SR a study, once it settles)."""
    code = (
        "from daemon.settings import WorkerSettings;"
        "print('study_settle_seconds' in WorkerSettings.model_fields)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(tree)},
        cwd=tree,  # not this tree's directory: ``-c`` puts the working directory first
    ).stdout
    return out.strip() == "True"


def settings_of(tree: Path, config: Path) -> dict[str, object]:
    """The settings a tree's daemon reads from ``config`` (its defaults filled in), flat."""
    code = (
        "import json,sys;from daemon.settings import load_settings;"
        "print(json.dumps(load_settings(sys.argv[1]).model_dump(mode='json')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(config)],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(tree)},
        cwd=config.parent,
    ).stdout
    flat: dict[str, object] = {}

    def walk(prefix: str, value: object) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                walk(f"{prefix}.{key}" if prefix else key, item)
        else:
            flat[prefix] = value

    walk("", json.loads(out))
    return flat


def run_tree(
    tree: Path,
    node: Path,
    bundle: Path,
    latency_files: Sequence[tuple[Path, str]],
    burst_files: Sequence[tuple[Path, str]],
    args: argparse.Namespace,
) -> tuple[Run, dict[str, object]]:
    """The scenario against a daemon from ``tree``; also the settings it ran with."""
    run = Run()
    megabytes = sum(p.stat().st_size for p, _ in burst_files) / 1e6
    pacs = Destination(node / "pacs").start()
    daemon = TreeDaemon(
        node / "node",
        destinations=[pacs.destination()],
        sections={
            "model": {"threads": args.threads, "bundle": str(bundle)},
            "logging": {"level": "WARNING"},
        },
        tree=tree,
        # A tree with study reports sends each study's SR at once here, as a tree
        # without them sends each image's: the burst compares work, not a settle wait.
        settle_now=knows_settling(tree),
    )
    try:
        settings = settings_of(tree, daemon.config)
        daemon.start()
        # 1. latency, one study at a time
        for path, uid in latency_files:
            t0 = time.monotonic()
            done = send([path], daemon.port, daemon.ae_title).communicate()[0]
            run.acks.append(time.monotonic() - t0)
            if "Received Store Response (Success)" not in done:
                print(f"not acknowledged: {path.name}\n{done}")
                run.lost = True
                continue
            with pacs.changed:
                pacs.changed.wait_for(lambda uid=uid: _has_sc(pacs, uid), timeout=60)
            arrival = _sc_time(pacs, uid)
            if arrival is None:
                print(f"no Secondary Capture for {uid}")
                run.lost = True
                continue
            run.latencies.append(arrival - t0)

        # 2. the burst, once every output of the latency run is in
        pacs.wait_count(2 * len(latency_files), timeout=120)
        before = len(pacs.arrivals)
        t0 = time.monotonic()
        ingest_s, run.burst_acks = burst(
            [p for p, _ in burst_files], daemon.port, daemon.ae_title, args.senders
        )
        all_out = pacs.wait_count(before + 2 * len(burst_files), timeout=600)
        run.complete_s = max(pacs.arrivals.values()) - t0
        run.delivered = len(pacs.arrivals) - before
        if run.burst_acks != len(burst_files) or not all_out:
            run.lost = True
        deadline = time.monotonic() + 60
        while not daemon.terminal() and time.monotonic() < deadline:
            time.sleep(0.1)
        states = daemon.query("SELECT state, count(*) FROM jobs GROUP BY state")
        deliveries = daemon.query("SELECT state, count(*) FROM deliveries GROUP BY state")
        run.states = ", ".join(f"{s} {n}" for s, n in states)
        run.deliveries = ", ".join(f"{s} {n}" for s, n in deliveries)
    finally:
        daemon.stop()
        pacs.stop()
    run.ingest_mbs = megabytes / ingest_s

    # 3. the same burst into a plain storescp, right after: the ingest baseline
    plain = Destination(node / "plain", plain=True).start()
    try:
        plain_s, _ = burst([p for p, _ in burst_files], plain.port, plain.ae_title, args.senders)
    finally:
        plain.stop()
    run.plain_mbs = megabytes / plain_s
    shutil.rmtree(node, ignore_errors=True)  # the spool: 2.5 GB a turn
    return run, settings


def merged(runs: Sequence[Run]) -> Run:
    """The turns of one tree taken together (latencies pooled, rates from the totals)."""
    out = Run()
    for run in runs:
        out.latencies += run.latencies
        out.acks += run.acks
        out.lost |= run.lost
    out.burst_acks = sum(r.burst_acks for r in runs)
    out.delivered = sum(r.delivered for r in runs)
    out.complete_s = sum(r.complete_s for r in runs)
    out.ingest_mbs = statistics.fmean(r.ingest_mbs for r in runs)
    out.plain_mbs = statistics.fmean(r.plain_mbs for r in runs)
    out.states = " / ".join(r.states for r in runs)
    out.deliveries = " / ".join(r.deliveries for r in runs)
    return out


def print_table(rows: Sequence[Sequence[str]], header: Sequence[str]) -> None:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    print(" | ".join(f"{h:<{w}}" for h, w in zip(header, widths, strict=True)))
    print("-|-".join("-" * w for w in widths))
    for row in rows:
        print(" | ".join(f"{c:<{w}}" for c, w in zip(row, widths, strict=True)))


def single_table(run: Run, args: argparse.Namespace) -> None:
    ratio = run.ingest_mbs / run.plain_mbs
    print_table(
        [
            (
                "latency p50, storescu -> SC at storescp",
                f"{statistics.median(run.latencies):.3f} s",
                "<= 0.8 s",
            ),
            ("latency p95", f"{percentile(run.latencies, 95):.3f} s", "<= 1.5 s"),
            ("  of which acknowledgement p50", f"{statistics.median(run.acks):.3f} s", ""),
            (
                f"burst: acknowledged / sent ({args.senders} storescu)",
                f"{run.burst_acks} / {args.burst}",
                "all",
            ),
            ("burst: SC+SR delivered", f"{run.delivered} / {2 * args.burst}", "all"),
            ("burst: completed studies per second", f"{args.burst / run.complete_s:.2f}", ">= 3"),
            ("burst: ChestAid ingest", f"{run.ingest_mbs:.0f} MB/s", ""),
            ("burst: plain storescp ingest", f"{run.plain_mbs:.0f} MB/s", ""),
            ("burst: ingest ratio ChestAid / storescp", f"{ratio:.2f}", ">= 0.85"),
            ("jobs by state", run.states, ""),
            ("deliveries by state", run.deliveries, ""),
        ],
        ("measure", "result", "target"),
    )


def compare_table(ours: Run, prev: Run, args: argparse.Namespace, turns: int) -> None:
    def verdict(ok: bool) -> str:
        return "pass" if ok else "FAIL"

    p50, p50_prev = statistics.median(ours.latencies), statistics.median(prev.latencies)
    rate, rate_prev = (turns * args.burst / r.complete_s for r in (ours, prev))
    ingest, ingest_prev = (r.ingest_mbs / r.plain_mbs for r in (ours, prev))
    sent = turns * args.burst
    print_table(
        [
            (
                "latency p50",
                f"{p50:.3f} s",
                f"{p50_prev:.3f} s",
                f"{p50 / p50_prev:.2f}x",
                "<= 0.6x",
                verdict(p50 <= 0.6 * p50_prev),
            ),
            (
                "latency p95",
                f"{percentile(ours.latencies, 95):.3f} s",
                f"{percentile(prev.latencies, 95):.3f} s",
                f"{percentile(ours.latencies, 95) / percentile(prev.latencies, 95):.2f}x",
                "",
                "",
            ),
            (
                "  acknowledgement p50",
                f"{statistics.median(ours.acks):.3f} s",
                f"{statistics.median(prev.acks):.3f} s",
                f"{statistics.median(ours.acks) / statistics.median(prev.acks):.2f}x",
                "",
                "",
            ),
            (
                "burst: completed studies/s",
                f"{rate:.2f}",
                f"{rate_prev:.2f}",
                f"{rate / rate_prev:.2f}x",
                ">= 2x",
                verdict(rate >= 2 * rate_prev),
            ),
            (
                "burst: ingest MB/s",
                f"{ours.ingest_mbs:.0f}",
                f"{prev.ingest_mbs:.0f}",
                f"{ours.ingest_mbs / prev.ingest_mbs:.2f}x",
                "",
                "",
            ),
            (
                "burst: plain storescp MB/s (run after)",
                f"{ours.plain_mbs:.0f}",
                f"{prev.plain_mbs:.0f}",
                "",
                "",
                "",
            ),
            (
                "burst: ingest ratio to plain storescp",
                f"{ingest:.2f}",
                f"{ingest_prev:.2f}",
                f"{ingest / ingest_prev:.2f}x",
                ">= 0.85",
                verdict(ingest >= 0.85),
            ),
            (
                "burst: acknowledged",
                f"{ours.burst_acks} / {sent}",
                f"{prev.burst_acks} / {sent}",
                "",
                "all",
                verdict(ours.burst_acks == sent),
            ),
            (
                "burst: SC+SR delivered",
                f"{ours.delivered} / {2 * sent}",
                f"{prev.delivered} / {2 * sent}",
                "",
                "all",
                verdict(ours.delivered == 2 * sent),
            ),
            ("jobs by state", ours.states, prev.states, "", "", ""),
        ],
        ("measure", "this tree", "other tree", "ratio", "target", ""),
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--studies", type=int, default=50)
    parser.add_argument("--burst", type=int, default=200)
    parser.add_argument("--senders", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2, help="PyTorch threads of the daemon")
    parser.add_argument(
        "--compare", type=Path, help="another ChestAid checkout to run side by side"
    )
    parser.add_argument(
        "--rounds", type=int, default=1, help="with --compare: turns of each tree, alternating"
    )
    args = parser.parse_args()
    for tool in ("storescu", "storescp", "echoscu"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} not found: install the Debian package 'dcmtk'")
    other = args.compare.resolve() if args.compare else None
    if other is not None and not (other / "daemon" / "cli").is_dir():
        raise SystemExit(f"{other} is not a ChestAid checkout (no daemon/cli)")

    work = Path(tempfile.mkdtemp(prefix="chestaid-bench-e2e-"))
    try:
        print(f"generating {args.studies + args.burst} 2500x2048 16-bit DX files ...", flush=True)
        latency_files = make_studies(work / "latency", args.studies, seed=1)
        burst_files = make_studies(work / "burst", args.burst, seed=2)
        megabytes = sum(p.stat().st_size for p, _ in burst_files) / 1e6
        bundle = unchecked_bundle(ROOT, work / "bundle")
        if other is None:
            run, _ = run_tree(ROOT, work / "run", bundle, latency_files, burst_files, args)
            print()
            single_table(run, args)
            lost = run.lost
        else:
            runs: dict[Path, list[Run]] = {ROOT: [], other: []}
            settings: dict[Path, dict[str, object]] = {}
            for turn in range(args.rounds):
                order = (ROOT, other) if turn % 2 == 0 else (other, ROOT)
                for tree in order:
                    print(f"round {turn + 1}: {tree} ...", flush=True)
                    run, settings[tree] = run_tree(
                        tree, work / "run", bundle, latency_files, burst_files, args
                    )
                    runs[tree].append(run)
            ours, prev = merged(runs[ROOT]), merged(runs[other])
            print(f"\nthis tree: {ROOT}\nother tree: {other}\n")
            compare_table(ours, prev, args, args.rounds)
            weights = [
                t / "chestaid" / "default_model" / "weights.safetensors" for t in (ROOT, other)
            ]
            same = _digest(weights[0]) == _digest(weights[1])
            print(
                f"\nbundle: this tree's default model ({read_version(bundle)}) for both, "
                f"without its not-assessable checks; the trees' bundled weights are "
                f"{'identical' if same else 'DIFFERENT'}"
            )
            differing = sorted(
                key
                for key in settings[ROOT].keys() | settings[other].keys()
                if settings[ROOT].get(key, "(absent)") != settings[other].get(key, "(absent)")
                and not key.startswith(("node.port", "web.port", "storage.", "destinations"))
            )
            if differing:
                print("settings that differ between the trees (each tree's defaults):")
                for key in differing:
                    print(
                        f"  {key}: this {settings[ROOT].get(key, '(absent)')!r}, "
                        f"other {settings[other].get(key, '(absent)')!r}"
                    )
            else:
                print("settings: the same in both trees")
            lost = ours.lost or prev.lost
        print(
            f"\n{megabytes:.0f} MB per burst; {args.studies} latency studies; "
            f"{args.senders} senders; model threads {args.threads}; "
            f"ingest ratio = ChestAid MB/s / plain storescp (--fork, no fsync) MB/s "
            f"on the same burst, run right after each turn"
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if lost else 0


def read_version(bundle: Path) -> str:
    manifest = json.loads((bundle / "manifest.json").read_text("utf-8"))
    return f"{manifest.get('name')} {manifest.get('version')}"


def _sc_time(pacs: Destination, uid: str) -> float | None:
    return pacs.sc_arrivals().get(uid)


def _has_sc(pacs: Destination, uid: str) -> bool:
    return _sc_time(pacs, uid) is not None


if __name__ == "__main__":
    sys.exit(main())
