"""Image uploads against a live daemon: four worst-case PNGs at once, the daemon's memory.

Issue 14 item 6: a 0.3 MB 16-bit RGBA PNG just under the 40-megapixel limit added about
880 MiB to the process that also receives and scores studies, and four at once took it
from 1.7 to 3.5 GiB. Each scenario here posts the same PNG ``--uploads`` times at once
to ``/api/v1/analyses`` of a real ``chestaid-daemon serve`` (all roles) and records each
answer, the wall time, and the daemon's resident memory: the baseline (after start and
one small analysis, so the model's weights are loaded) and the peak (VmHWM, reset
before each scenario through /proc/PID/clear_refs).

    .venv/bin/python benchmarks/bench_upload_memory.py [--uploads 4]
        [--checkout PATH] [--compare PATH]

The daemon runs this checkout's code (or ``--checkout``'s); ``--compare`` runs the same
scenarios against another checkout afterwards (for example a worktree of main before the
change) and prints the ratio of the peaks above baseline.

Scenarios (the PNGs are made here: equal channels, a vertical ramp, highly compressible):

- ``rgba16-40mp``: 16-bit RGBA just under the 40-megapixel limit (the issue's file);
- ``rgba16-budget``: the largest square 16-bit RGBA within the default decoded budget
  (web.upload_max_decoded_mb, 160 MiB), which is decoded and scored;
- ``grey16-40mp``: 16-bit grey just under 40 megapixels (80 MB decoded), scored.

Target (the ceiling stated in the README): the peak stays under baseline + 600 MiB with
four concurrent worst-case uploads. Exits non-zero when the daemon dies or answers 500
(never for a missed memory target).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import struct
import sys
import tempfile
import threading
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.daemon_harness import Daemon  # noqa: E402

MIB = 1 << 20
CEILING = 600 * MIB  # above the baseline, with four worst-case uploads at once
MAX_PIXELS = 40_000_000  # worker.max_pixels, the default
DECODED_BUDGET = 160 * MIB  # web.upload_max_decoded_mb, the default
PASSWORD = "quartz lanterns drift over harbour"


def png(width: int, height: int, *, colour_type: int, bit_depth: int = 16) -> bytes:
    """A PNG of equal channels rising from black at the top to white at the bottom.

    Every row is one value repeated, so the file is tiny however large the image.
    """
    channels = {0: 1, 2: 3, 4: 2, 6: 4}[colour_type]
    top = (1 << bit_depth) - 1
    fmt = ">H" if bit_depth == 16 else ">B"
    packer = zlib.compressobj(9)
    parts = []
    for y in range(height):
        value = y * top // max(1, height - 1)
        sample = struct.pack(fmt, value)
        alpha = struct.pack(fmt, top)
        pixel = sample * (channels - 1) + alpha if channels in (2, 4) else sample * channels
        parts.append(packer.compress(b"\x00" + pixel * width))
    parts.append(packer.flush())

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", b"".join(parts))
        + chunk(b"IEND", b"")
    )


def scenarios() -> dict[str, bytes]:
    side_40mp = math.isqrt(MAX_PIXELS)  # 6324: 39,992,976 pixels
    side_budget = math.isqrt(DECODED_BUDGET // 8)  # 8 bytes a pixel (4 x 16 bits)
    return {
        "rgba16-40mp": png(side_40mp, side_40mp, colour_type=6),
        "rgba16-budget": png(side_budget, side_budget, colour_type=6),
        "grey16-40mp": png(side_40mp, side_40mp, colour_type=0),
    }


def memory_kib(pid: int, field: str) -> int:
    """A memory field of /proc/<pid>/status (VmRSS, VmHWM), in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def reset_peak(pid: int) -> None:
    """Set the process's VmHWM back to its current RSS (Linux 4.0 and later)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def token(base: str, one_time: str) -> str:
    """Sign in as the first admin, choose a password, and return a bearer token."""
    with httpx.Client(base_url=base, timeout=60) as client:
        issued = client.post("/api/v1/tokens", json={"username": "admin", "password": one_time})
        issued.raise_for_status()
        bearer = issued.json()["token"]
        changed = client.post(
            "/api/v1/me/password",
            json={"current": one_time, "new": PASSWORD},
            headers={"Authorization": f"Bearer {bearer}"},
        )
        changed.raise_for_status()
        return str(bearer)


def first_password(daemon: Daemon) -> str:
    for line in daemon.logs().splitlines():
        if '"one_time_password"' in line:
            return str(json.loads(line)["one_time_password"])
    raise RuntimeError("no one-time password in the daemon's log")


@dataclass
class Outcome:
    statuses: list[str]
    seconds: float
    baseline_kib: int
    peak_kib: int


def upload_all(base: str, bearer: str, data: bytes, uploads: int) -> tuple[list[str], float]:
    """Post ``data`` ``uploads`` times at once; each answer's status (and reason) and the wall
    time until the last answer."""
    start = threading.Barrier(uploads)
    answers: list[str] = ["no answer"] * uploads

    def send(i: int) -> None:
        with httpx.Client(base_url=base, timeout=600) as client:
            start.wait()
            try:
                answer = client.post(
                    "/api/v1/analyses",
                    params={"filename": f"upload-{i}.png"},
                    content=data,
                    headers={
                        "Authorization": f"Bearer {bearer}",
                        "Content-Type": "application/octet-stream",
                    },
                )
            except httpx.HTTPError as exc:
                answers[i] = f"failed: {type(exc).__name__}"
                return
            answers[i] = str(answer.status_code)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=send, args=(i,)) for i in range(uploads)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return answers, time.perf_counter() - t0


def run(checkout: Path, files: dict[str, bytes], uploads: int, root: Path) -> dict[str, Outcome]:
    """Every scenario against a daemon running ``checkout``'s code."""
    os.environ["PYTHONPATH"] = str(checkout.resolve())
    daemon = Daemon(root / checkout.name)
    daemon.start()
    outcomes: dict[str, Outcome] = {}
    try:
        assert daemon.process is not None
        pid = daemon.process.pid
        base = f"http://127.0.0.1:{daemon.web_port}"
        bearer = token(base, first_password(daemon))
        warm, _ = upload_all(base, bearer, png(256, 256, colour_type=0, bit_depth=8), 1)
        assert warm == ["200"], f"the warm-up analysis was answered {warm}"
        for name, data in files.items():
            baseline = memory_kib(pid, "VmRSS")
            reset_peak(pid)
            statuses, seconds = upload_all(base, bearer, data, uploads)
            alive = daemon.process.poll() is None
            peak = memory_kib(pid, "VmHWM") if alive else 0
            outcomes[name] = Outcome(statuses, seconds, baseline, peak)
            if not alive:
                break
    finally:
        daemon.stop()
    return outcomes


def table(label: str, outcomes: dict[str, Outcome]) -> None:
    print(f"\n{label}")
    print("| scenario | answers | seconds | baseline RSS | peak RSS | peak - baseline | ceiling |")
    print("|---|---|---|---|---|---|---|")
    for name, o in outcomes.items():
        above = (o.peak_kib - o.baseline_kib) * 1024
        met = "met" if above < CEILING else "missed"
        print(
            f"| {name} | {' '.join(o.statuses)} | {o.seconds:.1f} |"
            f" {o.baseline_kib / 1024:.0f} MiB | {o.peak_kib / 1024:.0f} MiB |"
            f" {above / MIB:.0f} MiB | < {CEILING // MIB} MiB ({met}) |"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uploads", type=int, default=4)
    parser.add_argument("--checkout", type=Path, default=ROOT, help="whose daemon code to run")
    parser.add_argument("--compare", type=Path, default=None, help="another checkout to run")
    args = parser.parse_args()
    t0 = time.perf_counter()
    files = scenarios()
    print(f"PNGs made in {time.perf_counter() - t0:.1f} s:")
    for name, data in files.items():
        print(f"  {name}: {len(data) / MIB:.2f} MiB on the wire")
    results: dict[Path, dict[str, Outcome]] = {}
    with tempfile.TemporaryDirectory(prefix="chestaid-uploads-") as tmp:
        for checkout in [args.checkout, *([args.compare] if args.compare else [])]:
            results[checkout] = run(checkout, files, args.uploads, Path(tmp))
            table(f"daemon code: {checkout.resolve()}", results[checkout])
    if args.compare is not None:
        print(f"\nratio of peak above baseline, {args.compare.name} / {args.checkout.name}")
        print("| scenario | ratio |")
        print("|---|---|")
        mine, theirs = results[args.checkout], results[args.compare]
        for name in files:
            if name in mine and name in theirs:
                a = max(1, mine[name].peak_kib - mine[name].baseline_kib)
                b = theirs[name].peak_kib - theirs[name].baseline_kib
                print(f"| {name} | {b / a:.1f} |")
    failed = any(
        s.startswith(("5", "failed", "no answer")) and s != "503"
        for outcomes in results.values()
        for o in outcomes.values()
        for s in o.statuses
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
