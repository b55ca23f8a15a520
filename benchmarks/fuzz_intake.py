"""Fuzz the network-to-model-input path with atheris (coverage-guided, libFuzzer).

The target (``tests/intake_fuzz_target.py``) is what a received file goes through in
the worker: ``read_for_scoring`` on the bytes with the worker's header screen, then
``preprocess`` with the default bundle's preprocessing, no weights loaded. Every
input must end in a typed ChestAid error or a valid model input; anything else
raised is a crash, and so is an input that runs past ``--timeout`` seconds or
takes the process past ``--rss-limit-mb`` (libFuzzer stops on those).

    python benchmarks/fuzz_intake.py --seconds 1800
    python benchmarks/fuzz_intake.py --runs 1000000 --crash-dir runs/fuzz/crashes

The fuzzer runs in a child process (libFuzzer ends its process when it stops); this
process builds the seed corpus, reads the child's counts and prints the table.
Crashing inputs are written to ``--crash-dir`` (``untyped-<sha1>.bin`` with its
traceback beside it, or libFuzzer's ``timeout-``/``oom-`` files); the corpus grown
by the fuzzer stays in ``--corpus``. Exit status 1 when anything crashed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
import traceback
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

STATS_EVERY_S = 1.0
LIBFUZZER_ARTIFACTS = ("crash-", "timeout-", "oom-", "leak-")


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=None, help="stop after this long")
    parser.add_argument("--runs", type=int, default=None, help="stop after this many executions")
    parser.add_argument("--corpus", type=Path, default=ROOT / "runs" / "fuzz" / "corpus")
    parser.add_argument("--crash-dir", type=Path, default=ROOT / "runs" / "fuzz" / "crashes")
    parser.add_argument("--max-pixels", type=int, default=None, help="pixel budget (small)")
    parser.add_argument("--timeout", type=int, default=10, help="seconds one input may take")
    parser.add_argument("--rss-limit-mb", type=int, default=2048)
    parser.add_argument("--max-len", type=int, default=32768, help="largest input, bytes")
    parser.add_argument("--json", action="store_true", help="print the counts as JSON")
    parser.add_argument(
        "--minimise",
        type=Path,
        default=None,
        metavar="FILE",
        help="shrink a crashing input to FILE.min (same exception type), then stop",
    )
    parser.add_argument("--child", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.seconds is None and args.runs is None:
        args.seconds = 60.0
    return args


# --- the child: atheris in this process -------------------------------------------------


class _Counts:
    def __init__(self, stats_path: Path, crash_dir: Path) -> None:
        self.stats_path, self.crash_dir = stats_path, crash_dir
        self.executions = 0
        self.outcomes: Counter[str] = Counter()
        self.crashes = 0
        self.crash_kinds: Counter[str] = Counter()
        self.started = time.monotonic()
        self.written = 0.0

    def crash(self, data: bytes, exc: BaseException) -> None:
        self.crashes += 1
        frames = traceback.extract_tb(exc.__traceback__)
        where = f"{frames[-1].filename}:{frames[-1].lineno}" if frames else "?"
        kind = f"{type(exc).__name__} at {where}"
        self.crash_kinds[kind] += 1
        if self.crash_kinds[kind] > 1:
            return  # one input kept per distinct crash
        name = f"untyped-{hashlib.sha1(data).hexdigest()}"
        self.crash_dir.mkdir(parents=True, exist_ok=True)
        (self.crash_dir / f"{name}.bin").write_bytes(data)
        (self.crash_dir / f"{name}.txt").write_text(
            "".join(traceback.format_exception(exc)), encoding="utf-8"
        )

    def write(self) -> None:
        self.written = time.monotonic()
        record = {
            "executions": self.executions,
            "seconds": self.written - self.started,
            "outcomes": dict(self.outcomes),
            "crashes": self.crashes,
            "crash_kinds": dict(self.crash_kinds),
        }
        partial = self.stats_path.with_suffix(".part")
        partial.write_text(json.dumps(record), encoding="utf-8")
        partial.replace(self.stats_path)


def _child(args: argparse.Namespace, libfuzzer_args: list[str]) -> None:
    import logging
    import warnings

    import atheris

    # Hostile headers make pydicom and ChestAid warn on nearly every input; the
    # outcome is what is judged here, and the noise would dominate the time.
    warnings.simplefilter("ignore")
    logging.disable(logging.CRITICAL)
    # The Python code that parses the bytes is instrumented for coverage; numpy,
    # torch and the C decoders are not (atheris sees no native coverage).
    with atheris.instrument_imports(include=["chestaid", "pydicom"]):
        import pydicom  # noqa: F401

        import chestaid.imaging
        import chestaid.preprocess  # noqa: F401
    import torch

    from tests.intake_fuzz_target import FUZZ_MAX_PIXELS, Target

    torch.set_num_threads(1)
    target = Target.default(max_pixels=args.max_pixels or FUZZ_MAX_PIXELS)
    counts = _Counts(args.child, args.crash_dir)

    def one_input(data: bytes) -> None:
        if counts.executions == 0:
            counts.started = time.monotonic()
        counts.executions += 1
        try:
            counts.outcomes[target.score_bytes(data)] += 1
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:  # anything untyped is the crash looked for
            # BaseException: a Rust decoder's panic reaches Python as a PanicException,
            # which is not an Exception.
            counts.crash(data, exc)
        now = time.monotonic()
        done = (args.runs is not None and counts.executions >= args.runs) or (
            args.seconds is not None and now - counts.started >= args.seconds
        )
        if done or now - counts.written >= STATS_EVERY_S:
            counts.write()
        if done:
            sys.stdout.flush()
            os._exit(0)  # libFuzzer has no clean stop from inside; the counts are written

    atheris.Setup([sys.argv[0], *libfuzzer_args], one_input)
    atheris.Fuzz()


# --- minimising a crasher ---------------------------------------------------------------


def _crash_type(target: Any, data: bytes) -> str | None:
    try:
        target.score_bytes(data)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # the crash being shrunk
        return type(exc).__name__
    return None


def minimise(path: Path, max_pixels: int | None) -> Path:
    """Remove ever smaller chunks of a crashing input while it crashes the same way."""
    import logging
    import warnings

    from tests.intake_fuzz_target import FUZZ_MAX_PIXELS, Target

    warnings.simplefilter("ignore")
    logging.disable(logging.CRITICAL)
    target = Target.default(max_pixels=max_pixels or FUZZ_MAX_PIXELS)
    data = path.read_bytes()
    kind = _crash_type(target, data)
    if kind is None:
        raise SystemExit(f"{path} does not crash the target")
    chunk = max(1, len(data) // 2)
    while chunk >= 1:
        start, shrunk = 0, False
        while start < len(data):
            candidate = data[:start] + data[start + chunk :]
            if candidate and _crash_type(target, candidate) == kind:
                data, shrunk = candidate, True
            else:
                start += chunk
        if not shrunk:
            chunk //= 2
    out = path.with_name(path.name + ".min")
    out.write_bytes(data)
    print(f"{kind}: {path.stat().st_size} -> {len(data)} bytes in {out}")
    return out


# --- the parent: corpus, child, table ---------------------------------------------------


def _write_seeds(corpus: Path) -> int:
    from tests.intake_fuzz_target import seed_corpus

    corpus.mkdir(parents=True, exist_ok=True)
    seeds = seed_corpus()
    for name, data in seeds.items():
        (corpus / f"seed-{name}").write_bytes(data)
    return len(seeds)


def _table(rows: list[tuple[str, str]]) -> str:
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Build the seeds, run the fuzzer child until it stops, and gather its counts."""
    seeds = _write_seeds(args.corpus)
    args.crash_dir.mkdir(parents=True, exist_ok=True)
    stats_path = args.crash_dir.parent / f".fuzz-stats-{os.getpid()}.json"
    forwarded = [
        f"--child={stats_path}",
        f"--crash-dir={args.crash_dir}",
        *([f"--seconds={args.seconds}"] if args.seconds is not None else []),
        *([f"--runs={args.runs}"] if args.runs is not None else []),
        *([f"--max-pixels={args.max_pixels}"] if args.max_pixels else []),
        "--",
        str(args.corpus),
        f"-timeout={args.timeout}",
        f"-rss_limit_mb={args.rss_limit_mb}",
        f"-max_len={args.max_len}",
        f"-artifact_prefix={args.crash_dir}{os.sep}",
        "-print_final_stats=1",
    ]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    child = subprocess.run([sys.executable, str(Path(__file__).resolve()), *forwarded], env=env)
    try:
        counts = json.loads(stats_path.read_text(encoding="utf-8"))
        stats_path.unlink()
    except FileNotFoundError:
        counts = {"executions": 0, "seconds": 0.0, "outcomes": {}, "crashes": 0, "crash_kinds": {}}
    artifacts = sorted(
        p.name for p in args.crash_dir.iterdir() if p.name.startswith(LIBFUZZER_ARTIFACTS)
    )
    outcomes: dict[str, int] = counts["outcomes"]
    typed = {k: v for k, v in outcomes.items() if k != "model-input"}
    return {
        "executions": counts["executions"],
        "seconds": round(counts["seconds"], 1),
        "executions_per_s": round(counts["executions"] / counts["seconds"], 1)
        if counts["seconds"]
        else 0.0,
        "crashes": counts["crashes"] + len(artifacts),
        "crash_kinds": {**counts["crash_kinds"], **{a: 1 for a in artifacts}},
        "typed_errors": len(typed),
        "typed_error_counts": dict(sorted(typed.items(), key=lambda kv: -kv[1])),
        "model_inputs": outcomes.get("model-input", 0),
        "seeds": seeds,
        "corpus_size": sum(1 for p in args.corpus.iterdir() if p.is_file()),
        "child_exit": child.returncode,
    }


def main(argv: list[str] | None = None) -> int:
    raw = sys.argv[1:] if argv is None else argv
    ours, libfuzzer_args = (
        (raw[: raw.index("--")], raw[raw.index("--") + 1 :]) if "--" in raw else (raw, [])
    )
    args = _parse(ours)
    if args.child is not None:
        _child(args, libfuzzer_args)
        return 0
    if args.minimise is not None:
        minimise(args.minimise, args.max_pixels)
        return 0
    result = run(args)
    if args.json:
        print(json.dumps(result))
    else:
        print(
            _table(
                [
                    ("executions", str(result["executions"])),
                    ("executions/s", str(result["executions_per_s"])),
                    ("seconds", str(result["seconds"])),
                    ("crashes", str(result["crashes"])),
                    ("distinct typed errors", str(result["typed_errors"])),
                    ("valid model inputs", str(result["model_inputs"])),
                    ("corpus size", f"{result['corpus_size']} ({result['seeds']} seeds)"),
                ]
            )
        )
        for name, n in result["typed_error_counts"].items():
            print(f"  {name}: {n}")
        for kind, n in result["crash_kinds"].items():
            print(f"  CRASH {kind}: {n}")
        if result["child_exit"]:
            print(f"the fuzzer process ended with status {result['child_exit']}")
        print(f"crashing inputs in {args.crash_dir}")
    return 1 if result["crashes"] or result["child_exit"] not in (0,) else 0


if __name__ == "__main__":
    raise SystemExit(main())
