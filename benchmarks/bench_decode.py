"""Decode + preprocess of a 2500x2048 DX, this tree against another, in one run; prints a table.

The image is the synthetic sample DX (``chestaid.sample.synthetic_dx``, 12 bits stored),
written uncompressed, as JPEG 2000 lossless, JPEG 2000 lossy (about 10:1) and 8-bit JPEG
baseline (Pillow's encoder, quality 90). Each tree is timed in its own process on
the same files, reading as its worker does (``read_for_scoring`` with the size the
worker says it needs, where the tree knows of one, then ``preprocess`` to the default
model's input); the two trees take turns, ``--rounds`` times, and their samples are
pooled, so both see the same load on a shared machine.

Target: JPEG 2000 decode + preprocess p50 <= 0.25x the other tree's.

    python benchmarks/bench_decode.py --compare path/to/previous/release [--repeats 10]
"""

from __future__ import annotations

import argparse
import inspect
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from pydicom.encaps import encapsulate
from pydicom.uid import (
    JPEG2000,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
)

ROWS, COLS = 2500, 2048
TARGET = 0.25
VARIANTS = ("uncompressed", "jpeg2000-lossless", "jpeg2000-lossy", "jpeg-baseline-8bit")
JPEG2000_VARIANTS = ("jpeg2000-lossless", "jpeg2000-lossy")


def make_files(work: Path) -> dict[str, Path]:
    """The DX in every variant measured, written under ``work``."""
    from chestaid.sample import synthetic_dx

    files = {}
    for name in VARIANTS:
        ds = synthetic_dx(rows=ROWS, cols=COLS, bits_stored=12)
        if name == "jpeg2000-lossless":
            ds.compress(JPEG2000Lossless, ds.pixel_array)
        elif name == "jpeg2000-lossy":
            ds.compress(JPEG2000, ds.pixel_array, j2k_cr=[10])
        elif name == "jpeg-baseline-8bit":
            eight = (ds.pixel_array >> 4).astype(np.uint8)
            buffer = io.BytesIO()
            Image.fromarray(eight, mode="L").save(buffer, format="JPEG", quality=90)
            ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
            ds.WindowCenter, ds.WindowWidth = 128, 256
            ds.PixelData = encapsulate([buffer.getvalue()])
            ds["PixelData"].VR = "OB"
            ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
            ds.LossyImageCompression = "01"
        else:
            assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
        path = work / f"{name}.dcm"
        ds.save_as(path, enforce_file_format=True)
        files[name] = path
    return files


def measure(files: dict[str, str], repeats: int) -> dict[str, Any]:
    """In the tree on sys.path: seconds of decode + preprocess of each file, as its worker reads."""
    from chestaid.bundle import default_bundle_path, read_manifest
    from chestaid.imaging import read_for_scoring
    from chestaid.preprocess import preprocess

    spec = read_manifest(default_bundle_path()).preprocessing
    kwargs: dict[str, Any] = {}
    if "need" in inspect.signature(read_for_scoring).parameters:
        from chestaid.imaging import needed_size
        from daemon.settings import WorkerSettings

        kwargs["need"] = needed_size(
            input_size=spec.input_size, picture_side=WorkerSettings().output_max_side
        )
    out: dict[str, Any] = {"samples": {}, "shapes": {}}
    for name, path in files.items():
        image = read_for_scoring(path, **kwargs).image
        preprocess(image.pixels, spec)  # warm up
        out["shapes"][name] = list(image.pixels.shape)
        samples = []
        for _ in range(repeats):
            start = time.perf_counter()
            preprocess(read_for_scoring(path, **kwargs).image.pixels, spec)
            samples.append(time.perf_counter() - start)
        out["samples"][name] = samples
    return out


def run_tree(tree: Path, files: dict[str, Path], repeats: int) -> dict[str, Any]:
    """Measure in a new process importing ChestAid from ``tree``."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    proc = subprocess.run(
        [
            sys.executable,
            str(Path(__file__).resolve()),
            "--measure",
            json.dumps({k: str(v) for k, v in files.items()}),
            "--repeats",
            str(repeats),
        ],
        env=env,
        cwd=tree,
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--compare", type=Path, help="the other tree (a checkout of the previous release)"
    )
    parser.add_argument("--repeats", type=int, default=10, help="timed reads per file per round")
    parser.add_argument("--rounds", type=int, default=3, help="turns each tree takes")
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure is not None:
        print(json.dumps(measure(json.loads(args.measure), args.repeats)))
        return
    if args.compare is None:
        parser.error("--compare is required")
    this = Path(__file__).resolve().parents[1]
    trees = {"this": this, "other": args.compare.resolve()}
    with tempfile.TemporaryDirectory(prefix="chestaid-bench-decode-") as tmp:
        files = make_files(Path(tmp))
        pooled: dict[str, dict[str, list[float]]] = {k: {n: [] for n in VARIANTS} for k in trees}
        shapes: dict[str, dict[str, list[int]]] = {}
        for _ in range(args.rounds):
            for key, tree in trees.items():
                result = run_tree(tree, files, args.repeats)
                shapes[key] = result["shapes"]
                for name, samples in result["samples"].items():
                    pooled[key][name].extend(samples)
        sizes = {name: files[name].stat().st_size for name in VARIANTS}
    print(f"decode + preprocess, {ROWS}x{COLS} 12-bit synthetic DX, p50 (p95) in ms;")
    print(f"this tree: {this.name}; other: {args.compare}")
    print(f"{args.rounds} rounds x {args.repeats} reads per tree, taking turns\n")
    print("| variant | file MB | decoded at (this) | this | other | ratio | target |")
    print("|---|---|---|---|---|---|---|")
    for name in VARIANTS:
        mine = np.asarray(pooled["this"][name]) * 1000
        theirs = np.asarray(pooled["other"][name]) * 1000
        ratio = float(np.median(mine) / np.median(theirs))
        target = f"<= {TARGET}x" if name in JPEG2000_VARIANTS else ""
        verdict = ("PASS" if ratio <= TARGET else "FAIL") if target else ""
        print(
            f"| {name} | {sizes[name] / 1e6:.1f} | {'x'.join(map(str, shapes['this'][name]))} "
            f"| {np.median(mine):.1f} ({np.percentile(mine, 95):.1f}) "
            f"| {np.median(theirs):.1f} ({np.percentile(theirs, 95):.1f}) "
            f"| {ratio:.2f} | {target} {verdict} |"
        )


if __name__ == "__main__":
    main()
