"""HL7 round trips to a RIS: what ChestAid adds to each message, against the bare exchange.

An MLLP listener on loopback (the suite's validating peer, tests/mllp_peer.py: every
message parsed strictly by hl7apy, then acknowledged AA) takes ``--messages`` results
two ways, taking turns, on one connection each:

- **bare**: the same finished ORU^R01 sent again and again, each acknowledgement read:
  the cost of MLLP and of the peer's validation, the floor of any sender;
- **ChestAid**: what the HL7 transport does per result: read the SR from disk, read it
  back into its content, build and validate the ORU^R01, send it, read and check the
  acknowledgement (``Hl7Session.send``).

It prints round trips per second and p50/p95 ms for each, and ChestAid's time per
message as a ratio of the bare one. No target: one message goes per scored image, so
the figure to compare with is the daemon's scoring rate (benchmarks/bench_e2e.py); a
sender that keeps well above it never holds results back.

    .venv/bin/python benchmarks/bench_hl7.py [--messages 300]
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

from pydicom import dcmread
from pydicom.uid import generate_uid

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from chestaid.dicom_outputs import OutputIdentity, TriageFinding, structured_report  # noqa: E402
from chestaid.dicom_outputs.read_back import read_triage_report  # noqa: E402
from daemon.hl7.messages import Addressing, triage_result  # noqa: E402
from daemon.hl7.mllp import MllpConnection  # noqa: E402
from daemon.settings import Hl7Destination, NodeSettings, SenderSettings  # noqa: E402
from daemon.transports import Stored  # noqa: E402
from daemon.transports.hl7 import Hl7Transport  # noqa: E402
from tests.dicom_factory import make_dx  # noqa: E402
from tests.mllp_peer import MllpPeer  # noqa: E402

FINDING = TriageFinding(0.8734, 0.42, True, "URGENT", "densenet121-bench-1.0", 1)


def write_reports(directory: Path, count: int) -> list[Path]:
    """``count`` SRs of different studies, as the outbox holds them."""
    paths = []
    for i in range(count):
        source = make_dx(rows=64, cols=64, AccessionNumber=f"ACC{i:06d}", PatientID=f"P{i}")
        identity = OutputIdentity(str(generate_uid()), str(generate_uid()), 9902)
        buffer = io.BytesIO()
        structured_report(source, FINDING, identity).save_as(buffer, enforce_file_format=True)
        path = directory / f"sr-{i:05d}.dcm"
        path.write_bytes(buffer.getvalue())
        paths.append(path)
    return paths


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)

    peer = MllpPeer().start()
    destination = Hl7Destination.model_validate(
        {"kind": "hl7", "name": "ris", "host": "127.0.0.1", "port": peer.port}
    )
    transport = Hl7Transport(node=NodeSettings(), settings=SenderSettings())
    times: dict[str, list[float]] = {"bare": [], "ChestAid": []}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            paths = write_reports(Path(tmp), args.messages)
            finished = triage_result(
                read_triage_report(dcmread(paths[0])),
                addressing=Addressing(),
                destination="ris",
                raising_bands={"URGENT"},
            )
            for _ in range(args.rounds):
                with MllpConnection("127.0.0.1", peer.port, timeout=30) as connection:
                    for _ in paths:
                        t0 = time.perf_counter()
                        connection.exchange(finished)
                        times["bare"].append(time.perf_counter() - t0)
                with transport.open(destination) as session:
                    for path in paths:
                        t0 = time.perf_counter()
                        outcome = session.send(path)
                        times["ChestAid"].append(time.perf_counter() - t0)
                        if not isinstance(outcome, Stored):
                            print(f"not delivered: {outcome}")
                            return 1
    finally:
        peer.stop()
    if peer.invalid:
        print(f"{len(peer.invalid)} messages failed the peer's validation")
        return 1

    print(f"HL7 round trips on loopback, {args.messages} messages x {args.rounds} rounds each")
    print(f"{'':<12}{'per second':>12}{'p50 ms':>10}{'p95 ms':>10}")
    for name, values in times.items():
        rate = len(values) / sum(values)
        p50, p95 = (1000 * percentile(values, q) for q in (0.5, 0.95))
        print(f"{name:<12}{rate:>12.0f}{p50:>10.2f}{p95:>10.2f}")
    ratio = statistics.median(times["ChestAid"]) / statistics.median(times["bare"])
    print(f"ChestAid / bare, p50 per message: {ratio:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
