"""Peak memory of ``chestaid predict`` on one DX, beside another checkout's, in one run.

Each tree's ``python -m chestaid.cli predict --json --cam DIR <dx>`` runs in its own
process (``PYTHONPATH`` = the tree) under ``/usr/bin/time -v``; the table gives the
peak resident set size of each (the median of ``--repeats`` runs, turns alternating)
and checks that both trees printed the same record (score, logit, threshold,
assessment). Target: peak RSS <= 1.2 GiB.

The DX is a 2500x2048 16-bit DX made from a picture given with ``--image`` (a real
radiograph, so the image is assessable and Grad-CAM runs, as on a modality's image),
or the synthetic sample (not assessable: no Grad-CAM) without one.

    .venv/bin/python benchmarks/bench_predict_memory.py --compare ../previous-release \\
        --image path/to/pneumonia-kermany/train/NORMAL/IM-0115-0001.jpeg
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from chestaid.sample import synthetic_dx  # noqa: E402

TARGET_MIB = 1.2 * 1024
ROWS, COLS = 2500, 2048


def make_dx(path: Path, image: Path | None) -> Path:
    """A 2500x2048 16-bit DX: the given picture resized into it, or the synthetic one."""
    ds = synthetic_dx(rows=ROWS, cols=COLS, bits_stored=16)
    if image is not None:
        grey = Image.open(image).convert("L").resize((COLS, ROWS), Image.Resampling.BILINEAR)
        pixels = np.asarray(grey, dtype=np.uint16) * 257
        ds.WindowCenter, ds.WindowWidth = 32768, 65536
        ds.PixelData = pixels.tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def predict(tree: Path, dx: Path, cam: Path) -> tuple[float, dict[str, object]]:
    """Peak RSS in MiB of one ``predict`` from ``tree``, and the record it printed."""
    done = subprocess.run(
        [
            "/usr/bin/time",
            "-v",
            sys.executable,
            "-m",
            "chestaid.cli",
            "predict",
            "--json",
            "--cam",
            str(cam),
            str(dx),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(tree)},
        cwd=cam.parent,
    )
    found = re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr)
    if found is None or not done.stdout.strip():
        raise SystemExit(f"predict from {tree} failed:\n{done.stderr[-2000:]}")
    record = json.loads(done.stdout.strip().splitlines()[-1])
    return int(found.group(1)) / 1024, record


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--compare", type=Path, help="another ChestAid checkout to run beside")
    parser.add_argument("--image", type=Path, help="a radiograph (PNG/JPEG) to make the DX from")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if not Path("/usr/bin/time").is_file():
        raise SystemExit("/usr/bin/time not found: install the Debian package 'time'")
    trees = [ROOT] + ([args.compare.resolve()] if args.compare else [])
    with tempfile.TemporaryDirectory(prefix="chestaid-bench-predict-") as tmp:
        work = Path(tmp)
        dx = make_dx(work / "dx.dcm", args.image)
        peaks: dict[Path, list[float]] = {tree: [] for tree in trees}
        records: dict[Path, dict[str, object]] = {}
        for turn in range(args.repeats):
            for tree in trees if turn % 2 == 0 else trees[::-1]:
                cam = work / f"cam-{len(peaks[tree])}-{trees.index(tree)}"
                peak, records[tree] = predict(tree, dx, cam)
                peaks[tree].append(peak)
        ours = statistics.median(peaks[ROOT])
        rows = [("peak RSS, median", f"{ours:.0f} MiB")]
        if args.compare:
            prev = statistics.median(peaks[trees[1]])
            rows = [
                (
                    "peak RSS, median",
                    f"{ours:.0f} MiB",
                    f"{prev:.0f} MiB",
                    f"{ours / prev:.2f}x",
                    "<= 1229 MiB (1.2 GiB)",
                    "pass" if ours <= TARGET_MIB else "FAIL",
                ),
                (
                    "peak RSS, each run",
                    " ".join(f"{p:.0f}" for p in peaks[ROOT]),
                    " ".join(f"{p:.0f}" for p in peaks[trees[1]]),
                    "",
                    "",
                    "",
                ),
            ]
            header = ("measure", "this tree", "other tree", "ratio", "target", "")
        else:
            rows = [(*rows[0], "<= 1229 MiB (1.2 GiB)", "pass" if ours <= TARGET_MIB else "FAIL")]
            header = ("measure", "this tree", "target", "")
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
        print(" | ".join(f"{h:<{w}}" for h, w in zip(header, widths, strict=True)))
        print("-|-".join("-" * w for w in widths))
        for row in rows:
            print(" | ".join(f"{c:<{w}}" for c, w in zip(row, widths, strict=True)))
        mine = {k: v for k, v in records[ROOT].items() if k not in ("file", "cam")}
        print(f"\nrecord: {json.dumps(mine)}")
        if args.compare:
            theirs = {k: v for k, v in records[trees[1]].items() if k not in ("file", "cam")}
            print("records of the two trees: " + ("identical" if mine == theirs else "DIFFERENT"))
            cams = [records[tree].get("cam") for tree in trees]
            if all(cams):
                same = Path(str(cams[0])).read_bytes() == Path(str(cams[1])).read_bytes()
                print(
                    "Grad-CAM overlays of the two trees: " + ("identical" if same else "DIFFERENT")
                )
            if mine != theirs:
                print(f"other tree's record: {json.dumps(theirs)}")
        source = args.image.name if args.image else "the synthetic sample"
        print(f"DX {ROWS}x{COLS} 16-bit from {source}; {args.repeats} runs of each tree")
    return 0


if __name__ == "__main__":
    sys.exit(main())
