"""A few thousand atheris executions of the intake path, failing on any crash.

The long run is ``benchmarks/fuzz_intake.py --seconds N``; this one only shows the
fuzzer still runs over the path and that the crashers found so far stay fixed (they
are among its seeds). atheris missing skips, naming the package, and fails under
``CI=true``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
RUNS = 3000


def _require_atheris() -> None:
    if importlib.util.find_spec("atheris") is None:
        message = "atheris not installed: pip install atheris (in the test extras)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


def test_a_short_fuzz_run_of_the_intake_path_finds_no_crash(tmp_path: Path) -> None:
    _require_atheris()
    crashes = tmp_path / "crashes"
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "fuzz_intake.py"),
            f"--runs={RUNS}",
            f"--corpus={tmp_path / 'corpus'}",
            f"--crash-dir={crashes}",
            "--json",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT), "RUST_BACKTRACE": "0"},
        timeout=900,  # a guard against a hang, not a timing assertion
        check=False,
    )
    assert done.stdout.strip(), done.stderr[-3000:]
    counts = json.loads(done.stdout.strip().splitlines()[-1])
    found = sorted(p.name for p in crashes.iterdir())
    assert counts["crashes"] == 0, (counts["crash_kinds"], found)
    assert found == []
    assert done.returncode == 0, done.stderr[-3000:]
    assert counts["executions"] >= RUNS
    # The run went through the whole path: inputs refused for several reasons, and
    # inputs that came out as model input.
    assert counts["typed_errors"] >= 2, counts["typed_error_counts"]
    assert counts["model_inputs"] > 0
