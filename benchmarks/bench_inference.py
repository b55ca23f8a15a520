"""Inference speed and memory of the ML core on this machine's CPU; prints a table.

Measures, for DenseNet-121 at the bundle's input size (the default bundle when
installed, 160 px for 2.0; else random weights at 224, which cost the same as trained):

- plain forward and score + Grad-CAM latency at batch 1 (p50 / p95), and their ratio;
  the score includes the bundle's not-assessable checks, which run on the same forward
  pass (an image turned upright is scored twice: not measured here);
- throughput at batch 1, 8 and 32;
- decode + preprocess of a 2500x2048 16-bit DX, uncompressed and JPEG 2000;
- peak RSS of ``chestaid predict`` on one such DX (a separate process);
- every inference runtime installed here, in each precision this CPU has natively
  (:mod:`chestaid.runtimes`): forward and score + Grad-CAM p50 at batch 1, taking turns
  pass by pass, as a ratio to the PyTorch eager float32 forward of the same run, and
  their agreement with PyTorch float32 (max |logit difference|, decision flips at the
  governed threshold, lowest Grad-CAM correlation) on the fixed agreement inputs or,
  with ``--data``, on the bundle's whole report split; then the runtime "auto" picks
  here and how long picking takes.

Targets (2-core machine): score+Grad-CAM p50 <= 1.15x forward p50; decode+preprocess
of the uncompressed DX p50 <= 60 ms; predict peak RSS <= 1.5 GiB; the fastest runtime
that agrees: score + Grad-CAM p50 <= 0.2x the eager float32 forward (reachable only
where the CPU computes bfloat16 natively); agreement: logits within 0.05, no decision
flips.

    python benchmarks/bench_inference.py [--repeats 50] [--bundle DIR]
        [--data FOLDER-OF-THE-BUNDLE'S-DEVELOPMENT-IMAGES]
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

from chestaid.bundle import (
    Bundle,
    Manifest,
    default_bundle_path,
    load_bundle,
    read_manifest,
    save_bundle,
)
from chestaid.evaluation import cases_to_evaluate
from chestaid.imaging import read_dicom
from chestaid.inference import Scorer
from chestaid.models import Heads, build_model
from chestaid.preprocess import PreprocessSpec, preprocess
from chestaid.runtimes import Agreement, Runtime, RuntimeUnavailableError, TorchRuntime
from chestaid.runtimes.agreement import agreement_inputs, compare_heads
from chestaid.runtimes.cpu import NATIVE_BF16_FLAGS, cpu_flags, cpu_name
from chestaid.runtimes.selection import candidates
from chestaid.sample import synthetic_dx
from chestaid.training.dataset import ImageDataset


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


def installed_runtimes(scorer: Scorer) -> list[Runtime]:
    """PyTorch eager float32 first, then every other runtime and native precision here."""
    out: list[Runtime] = [TorchRuntime(scorer.model)]
    for label, build in candidates(
        scorer.model,
        runtime="auto",
        precision="auto",
        size=scorer.spec.input_size,
        threads=torch.get_num_threads(),
        cache_dir=None,
        cpu=cpu_flags(),
    ):
        try:
            out.append(build())
        except RuntimeUnavailableError as exc:
            print(f"runtime {label} not available: {exc}", file=sys.stderr)
    return out


def take_turns(fns: list[Callable[[], object]], repeats: int) -> list[list[float]]:
    """Seconds of each function's calls, the functions taking turns call by call."""
    for fn in fns:
        fn()
    out: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for fn, samples in zip(fns, out, strict=True):
            start = time.perf_counter()
            fn()
            samples.append(time.perf_counter() - start)
    return out


def _cat(parts: list[Heads]) -> Heads:
    orientation = [p.orientation for p in parts if p.orientation is not None]
    return Heads(
        logits=torch.cat([p.logits for p in parts]),
        orientation=torch.cat(orientation) if orientation else None,
        feature_map=torch.cat([p.feature_map for p in parts]),
        pooled=torch.cat([p.pooled for p in parts]),
    )


def report_split_agreement(
    bundle: Bundle, data: Path, scorer: Scorer, runtimes: list[Runtime]
) -> tuple[int, list[Agreement]]:
    """Each runtime's agreement with the first on the bundle's report split of ``data``."""
    cases, name = cases_to_evaluate(bundle, data, split="report")
    if cases.source != "bundle split":
        raise SystemExit(f"{data} is not this bundle's development data: no report split")
    dataset = ImageDataset(cases.base, cases.parts[name], bundle.manifest.preprocessing)
    inputs = torch.stack([dataset[i][0] for i in range(len(dataset))])
    batches = list(torch.split(inputs, 16))
    heads = [_cat([rt.forward_heads(b) for b in batches]) for rt in runtimes]
    weight = scorer.model.classifier.weight.detach()
    return len(dataset), [compare_heads(heads[0], h, weight, scorer.decide) for h in heads]


def runtime_rows(
    bundle: Bundle, scorer: Scorer, x1: torch.Tensor, repeats: int, data: Path | None
) -> list[tuple[str, str, str, str]]:
    """Rows for each runtime, the best ratio against the target, and the auto choice."""
    runtimes = installed_runtimes(scorer)
    scorers = [
        Scorer(
            scorer.model,
            scorer.calibrator,
            spec=scorer.spec,
            threshold=scorer.threshold,
            model_version=scorer.model_version,
            assessment=scorer.assessment,
            density=scorer.density,
            runtime=rt,
        )
        for rt in runtimes
    ]
    forward = take_turns(
        [lambda rt=rt: rt.forward_heads(x1) for rt in runtimes],  # type: ignore[misc]
        repeats,
    )
    scored = take_turns(
        [lambda sc=sc: sc.score_batch(x1) for sc in scorers],  # type: ignore[misc]
        repeats,
    )
    if data is not None:
        cases, agreements = report_split_agreement(bundle, data, scorer, runtimes)
        where = f"report split, {cases} images"
    else:
        inputs = agreement_inputs(scorer.spec)
        reference = runtimes[0].forward_heads(inputs)
        weight = scorer.model.classifier.weight.detach()
        agreements = [
            compare_heads(reference, rt.forward_heads(inputs), weight, scorer.decide)
            for rt in runtimes
        ]
        where = f"{len(inputs)} agreement inputs"
    eager = percentiles(forward[0])[0]
    rows: list[tuple[str, str, str, str]] = []
    best: tuple[float, str] | None = None
    for rt, fwd, cam, agreement in zip(runtimes, forward, scored, agreements, strict=True):
        f50, c50 = percentiles(fwd)[0], percentiles(cam)[0]
        ok = agreement.max_logit_difference <= 0.05 and agreement.decision_flips == 0
        if ok and (best is None or c50 < best[0]):
            best = (c50, rt.label)
        rows.append(
            (
                f"runtime {rt.label}",
                f"forward p50 {f50:.1f} ms (x{f50 / eager:.2f}), score + Grad-CAM p50 "
                f"{c50:.1f} ms (x{c50 / eager:.2f} eager forward)",
                f"{where}: max |dlogit| {agreement.max_logit_difference:.2g}, "
                f"{agreement.decision_flips} flips, CAM r >= {agreement.min_cam_correlation:.4f}",
                "agrees" if ok else "REFUSED",
            )
        )
    if best is not None:
        ratio = best[0] / eager
        rows.append(
            (
                f"fastest that agrees: {best[1]}, score + Grad-CAM",
                f"x{ratio:.2f} the eager float32 forward",
                "<= 0.2x",
                "PASS" if ratio <= 0.2 else "FAIL",
            )
        )
    start = time.perf_counter()
    chosen = Scorer.from_bundle(bundle, runtime="auto", precision="auto")
    rows.append(
        (
            "runtime auto picks",
            f"{chosen.runtime_name} (choosing took {time.perf_counter() - start:.1f} s)",
            "",
            "",
        )
    )
    return rows


def basic_rows(
    scorer: Scorer, x1: torch.Tensor, bundle_path: Path, work: Path, repeats: int
) -> list[tuple[str, str, str, str]]:
    """PyTorch latency and throughput, decode + preprocess, and predict's peak memory."""
    rows: list[tuple[str, str, str, str]] = []
    size = scorer.spec.input_size
    fwd = timed(lambda: scorer.logits(x1), repeats)
    cam = timed(lambda: scorer.score_batch(x1), repeats)
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
        reps = max(3, repeats // batch)
        seconds = timed(lambda xb=xb: scorer.score_batch(xb), reps, warmup=1)
        rows.append(
            (
                f"throughput, batch {batch}",
                f"{batch / float(np.median(seconds)):.1f} images/s",
                "",
                "",
            )
        )

    spec = scorer.spec
    for compressed in (False, True):
        path = make_dx(work / f"dx{'-j2k' if compressed else ''}.dcm", compressed=compressed)
        samples = timed(
            lambda path=path: preprocess(read_dicom(path).pixels, spec), max(10, repeats // 2)
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

    return rows


def main() -> None:
    """Run every measurement and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument(
        "--bundle", type=Path, help="bundle to measure (default: the bundled model)"
    )
    parser.add_argument(
        "--data",
        type=Path,
        help="the bundle's development images: check every runtime's agreement on its report split",
    )
    parser.add_argument(
        "--runtimes-only", action="store_true", help="measure the runtimes and nothing else"
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
    bundle = load_bundle(bundle_path)
    scorer = Scorer.from_bundle(bundle)
    size = manifest.preprocessing.input_size
    x1 = torch.randn(1, 1, size, size)
    rows: list[tuple[str, str, str, str]] = []

    if not args.runtimes_only:
        # Before the runtimes: a child's peak memory counts its parent's at the fork.
        rows.extend(basic_rows(scorer, x1, bundle_path, work, args.repeats))
    rows.extend(runtime_rows(bundle, scorer, x1, args.repeats, args.data))

    print(
        f"ChestAid inference benchmark: {manifest.architecture} at {size}, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, bundle {manifest.version}"
    )
    print(
        f"CPU: {cpu_name()}; native bfloat16 flags: {sorted(cpu_flags() & NATIVE_BF16_FLAGS) or 'none'}"
    )
    widths = [
        max(len(r[i]) for r in [("measure", "result", "target", "verdict"), *rows])
        for i in range(4)
    ]
    for row in [("measure", "result", "target", "verdict"), *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


if __name__ == "__main__":
    main()
