"""Deflate bombs against a live daemon: 8 associations at once, the daemon's peak memory.

Each association sends the same Deflated Explicit VR Little Endian DX whose Pixel
Data inflates to 2 GiB of zeros (about 2 MB on the wire), as it is (the sender never
inflates it). The daemon must refuse each (0xC212: it inflates beyond the budget the
worker reads under) while its resident memory stays bounded.

    .venv/bin/python benchmarks/bench_deflate_bombs.py [--associations 8] [--inflated-gib 2]
        [--checkout PATH]

The daemon runs this checkout's code (or ``--checkout``'s, to compare before and after).

Prints a table: each association's status and seconds, and the daemon's resident
memory after start and its peak (VmHWM) after the bombs. Target: peak under 2 GiB.
Exits non-zero when a bomb is answered anything but a failure status or the daemon
died (never for a missed memory target).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pydicom.uid import DeflatedExplicitVRLittleEndian  # noqa: E402
from pynetdicom import AE, _config  # noqa: E402

from tests.daemon_harness import Daemon  # noqa: E402
from tests.hostile_dicom import DX, deflate_bomb  # noqa: E402

GIB = 1 << 30
TARGET_PEAK = 2 * GIB


def memory_kib(pid: int, field: str) -> int:
    """A memory field of /proc/<pid>/status (VmRSS, VmHWM), in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def send(
    port: int, path: Path, start: threading.Barrier, results: list[tuple[str, float]], i: int
) -> None:
    ae = AE(ae_title="MODALITY")
    ae.add_requested_context(DX, DeflatedExplicitVRLittleEndian)
    start.wait()
    t0 = time.perf_counter()
    assoc = ae.associate("127.0.0.1", port, ae_title="CHESTAID")
    if not assoc.is_established:
        results[i] = ("not established", time.perf_counter() - t0)
        return
    status = assoc.send_c_store(path)
    assoc.release()
    code = f"0x{int(status.Status):04X}" if "Status" in status else "no answer"
    results[i] = (code, time.perf_counter() - t0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--associations", type=int, default=8)
    parser.add_argument("--inflated-gib", type=float, default=2.0)
    parser.add_argument("--checkout", type=Path, default=ROOT, help="whose daemon code to run")
    args = parser.parse_args()
    # The daemon subprocess imports from here, not from wherever the venv points.
    os.environ["PYTHONPATH"] = str(args.checkout.resolve())
    print(f"daemon code: {args.checkout.resolve()}")
    # Send files' bytes as they are: pynetdicom would otherwise read (inflate) them.
    _config.STORE_SEND_CHUNKED_DATASET = True
    with tempfile.TemporaryDirectory(prefix="chestaid-bombs-") as tmp:
        root = Path(tmp)
        bomb = root / "bomb.dcm"
        inflated = min(int(args.inflated_gib * GIB), 0xFFFFFFFE) & ~1  # OB: even, < 4 GiB
        t0 = time.perf_counter()
        deflate_bomb(bomb, inflated)
        print(
            f"bomb: {bomb.stat().st_size / (1 << 20):.1f} MB on the wire, inflates to"
            f" {inflated / GIB:.2f} GiB (built in {time.perf_counter() - t0:.1f} s)"
        )
        daemon = Daemon(
            root / "node", sections={"node": {"max_associations": args.associations + 2}}
        )
        daemon.start()
        try:
            assert daemon.process is not None
            pid = daemon.process.pid
            baseline = memory_kib(pid, "VmRSS")
            start = threading.Barrier(args.associations)
            results: list[tuple[str, float]] = [("not run", 0.0)] * args.associations
            threads = [
                threading.Thread(target=send, args=(daemon.port, bomb, start, results, i))
                for i in range(args.associations)
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            alive = daemon.process.poll() is None
            peak = memory_kib(pid, "VmHWM") if alive else 0
            kept = daemon.query("SELECT count(*) FROM instances")[0][0] if alive else None
        finally:
            daemon.stop()
    print()
    print("| association | status | seconds |")
    print("|---|---|---|")
    for i, (code, seconds) in enumerate(results, 1):
        print(f"| {i} | {code} | {seconds:.2f} |")
    print()
    print("| measure | result | target |")
    print("|---|---|---|")
    print(f"| daemon RSS after start | {baseline / (1 << 20):.2f} GiB | |")
    print(
        f"| daemon peak RSS (VmHWM) after {args.associations} bombs |"
        f" {peak / (1 << 20):.2f} GiB | < {TARGET_PEAK / GIB:.0f} GiB"
        f" ({'met' if alive and peak * 1024 < TARGET_PEAK else 'missed'}) |"
    )
    print(f"| instances kept | {kept} | 0 |")
    print(f"| daemon alive | {alive} | True |")
    refused = all(code.startswith("0x") and int(code, 16) >= 0xA000 for code, _ in results)
    return 0 if alive and refused and kept == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
