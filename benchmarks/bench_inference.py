"""Inference speed and memory of the ML core on this machine's CPU; prints a table.

Measures, for DenseNet-121 at the bundle's input size (the default bundle when
installed, 160 px for 2.0; else random weights at 224, which cost the same as trained):

- plain forward and score + Grad-CAM latency at batch 1 (p50 / p95), and their ratio;
  the score includes the bundle's not-assessable checks, which run on the same forward
  pass (an image turned upright is scored twice: not measured here);
- throughput at batch 1, 8 and 32;
- decode + preprocess of a 2500x2048 16-bit DX, uncompressed and JPEG 2000;
- peak RSS of ``chestaid predict`` on one such DX (a separate process).

Targets (2-core machine): score+Grad-CAM p50 <= 1.15x forward p50; decode+preprocess
of the uncompressed DX p50 <= 60 ms; predict peak RSS <= 1.5 GiB.

    python benchmarks/bench_inference.py [--repeats 50] [--bundle DIR]
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from pydicom.uid import JPEG2000Lossless

from chestaid.bundle import Manifest, default_bundle_path, load_bundle, read_manifest, save_bundle
from chestaid.imaging import read_dicom
from chestaid.inference import Scorer
from chestaid.models import build_model
from chestaid.preprocess import PreprocessSpec, preprocess
from chestaid.sample import synthetic_dx


def percentiles(samples: list[float]) -> tuple[float, float]:
    """p50 and p95 in milliseconds."""
    arr = np.asarray(samples) * 1000.0
    return float(np.percentile(arr, 50)), float(np.percentile(arr, 95))


def timed(fn: Callable[[], object], repeats: int, warmup: int = 3) -> list[float]:
    """Wall-clock seconds of ``repeats`` calls after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def make_dx(path: Path, *, compressed: bool) -> Path:
    """Write the 2500x2048 16-bit (12 stored) sample DX, optionally JPEG 2000 lossless."""
    ds = synthetic_dx(rows=2500, cols=2048, bits_stored=12)
    if compressed:
        ds.compress(JPEG2000Lossless, ds.pixel_array)
    ds.save_as(path, enforce_file_format=True)
    return path


def peak_rss_of_predict(bundle: Path, dicom: Path) -> float:
    """Peak resident memory, in MiB, of one ``chestaid predict`` process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "chestaid.cli",
            "-q",
            "predict",
            "--bundle",
            str(bundle),
            str(dicom),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"chestaid predict failed: {proc.stderr}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(before, after) / 1024.0


def main() -> None:
    """Run every measurement and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument(
        "--bundle", type=Path, help="bundle to measure (default: the bundled model)"
    )
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="chestaid-bench-"))
    bundle_path = args.bundle or default_bundle_path()
    if not (bundle_path / "manifest.json").is_file():
        bundle_path = work / "random-densenet121"
        save_bundle(
            bundle_path,
            build_model("densenet121").eval(),
            Manifest(
                version="bench",
                architecture="densenet121",
                classes=("NORMAL", "PNEUMONIA"),
                preprocessing=PreprocessSpec(input_size=224),
            ),
        )
    manifest = read_manifest(bundle_path)
    scorer = Scorer.from_bundle(load_bundle(bundle_path))
    size = manifest.preprocessing.input_size
    x1 = torch.randn(1, 1, size, size)
    rows: list[tuple[str, str, str, str]] = []

    fwd = timed(lambda: scorer.logits(x1), args.repeats)
    cam = timed(lambda: scorer.score_batch(x1), args.repeats)
    f50, f95 = percentiles(fwd)
    c50, c95 = percentiles(cam)
    rows.append(("forward, batch 1", f"p50 {f50:.1f} ms, p95 {f95:.1f} ms", "", ""))
    ratio = c50 / f50
    rows.append(
        (
            "score + Grad-CAM, batch 1",
            f"p50 {c50:.1f} ms, p95 {c95:.1f} ms (x{ratio:.3f})",
            "<= 1.15x forward",
            "PASS" if ratio <= 1.15 else "FAIL",
        )
    )
    for batch in (1, 8, 32):
        xb = torch.randn(batch, 1, size, size)
        reps = max(3, args.repeats // batch)
        seconds = timed(lambda xb=xb: scorer.score_batch(xb), reps, warmup=1)
        rows.append(
            (
                f"throughput, batch {batch}",
                f"{batch / float(np.median(seconds)):.1f} images/s",
                "",
                "",
            )
        )

    spec = manifest.preprocessing
    for compressed in (False, True):
        path = make_dx(work / f"dx{'-j2k' if compressed else ''}.dcm", compressed=compressed)
        samples = timed(
            lambda path=path: preprocess(read_dicom(path).pixels, spec), max(10, args.repeats // 2)
        )
        p50, p95 = percentiles(samples)
        target, verdict = ("", "")
        if not compressed:
            target, verdict = "p50 <= 60 ms", "PASS" if p50 <= 60 else "FAIL"
        rows.append(
            (
                f"decode + preprocess 2500x2048 16-bit DX, {'JPEG 2000' if compressed else 'uncompressed'}",
                f"p50 {p50:.1f} ms, p95 {p95:.1f} ms",
                target,
                verdict,
            )
        )
    rss = peak_rss_of_predict(bundle_path, work / "dx.dcm")
    rows.append(
        (
            "peak RSS, chestaid predict on one DX",
            f"{rss:.0f} MiB",
            "<= 1536 MiB",
            "PASS" if rss <= 1536 else "FAIL",
        )
    )

    print(
        f"ChestAid inference benchmark: {manifest.architecture} at {size}, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, bundle {manifest.version}"
    )
    widths = [
        max(len(r[i]) for r in [("measure", "result", "target", "verdict"), *rows])
        for i in range(4)
    ]
    for row in [("measure", "result", "target", "verdict"), *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


if __name__ == "__main__":
    main()
