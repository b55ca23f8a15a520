"""Local recalibration, shown honestly: a shifted "new site" through the real daemon.

Cases the model never saw: the default model's report split (patients held back from
training and from its calibration). A site shift is applied to them: another
prevalence, another exposure (a gamma curve) and a lower resolution. They are written
as 12-bit DX files and sent to a running ``chestaid-daemon`` by DCMTK's storescu.

1. ``--fit-cases`` studies are sent first and labelled with the product's feedback
   function (as a radiologist would, one study at a time);
2. ``chestaid-daemon calibration fit`` fits a local version on them, and
   ``calibration activate`` puts it in use (the daemon keeps running);
3. the remaining studies (other patients) are sent and scored with it.

On those remaining studies the script reports the ECE and the realised sensitivity and
specificity (Wilson 95% intervals) before (the bundle's calibration and threshold on
the same logits) and after (what the daemon reported with the local version).

    .venv/bin/python benchmarks/experiment_local_recalibration.py path/to/pneumonia-kermany/train
"""

from __future__ import annotations

import argparse
import json
import random
import re
import shutil
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np
from PIL import Image
from pydicom.uid import generate_uid

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from chestaid.bundle import default_bundle_path, load_bundle, read_splits  # noqa: E402
from chestaid.metrics import ece, wilson_interval  # noqa: E402
from chestaid.sample import synthetic_dx  # noqa: E402
from daemon.db.models import FeedbackLabel  # noqa: E402
from daemon.db.session import make_engine, make_session_factory, writing  # noqa: E402
from daemon.feedback import record_feedback  # noqa: E402
from tests.daemon_harness import Daemon, storescu, wait_until  # noqa: E402


def site_shift(path: Path, *, size: int, gamma: float) -> np.ndarray:
    """The image as a new site would send it: lower resolution, another exposure curve."""
    grey = np.asarray(Image.open(path).convert("L"), dtype=np.float64) / 255.0
    small = Image.fromarray(np.uint8(np.round(grey * 255))).resize((size, size), Image.BILINEAR)
    shifted = (np.asarray(small, dtype=np.float64) / 255.0) ** gamma
    return np.round(shifted * 4095).astype(np.uint16)


def write_dx(pixels: np.ndarray, path: Path) -> str:
    """A 12-bit DX with these pixels in its own study; returns the Study Instance UID."""
    ds = synthetic_dx(rows=pixels.shape[0], cols=pixels.shape[1], bits_stored=12)
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.PixelData = pixels.tobytes()
    ds.WindowCenter, ds.WindowWidth = 2048, 4096
    ds.save_as(path, enforce_file_format=True)
    return str(ds.StudyInstanceUID)


def rates(probs: np.ndarray, labels: np.ndarray, called: np.ndarray) -> dict[str, str]:
    """ECE, sensitivity and specificity with Wilson intervals, as printable text."""
    tp = int(np.sum(called & (labels == 1)))
    fn = int(np.sum(~called & (labels == 1)))
    tn = int(np.sum(~called & (labels == 0)))
    fp = int(np.sum(called & (labels == 0)))

    def show(k: int, n: int) -> str:
        lo, hi = wilson_interval(k, n)
        return f"{k / n:.3f} [{lo:.3f}, {hi:.3f}]" if n else "n/a"

    return {
        "ECE": f"{ece(probs, labels, n_bins=10):.3f}",
        "sensitivity": show(tp, tp + fn),
        "specificity": show(tn, tn + fp),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("data", type=Path, help="pneumonia-kermany/train")
    parser.add_argument("--fit-cases", type=int, default=150)
    parser.add_argument("--prevalence", type=float, default=0.5)
    parser.add_argument("--gamma", type=float, default=0.4)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    bundle_path = default_bundle_path()
    splits = read_splits(bundle_path)
    if splits is None:
        raise SystemExit("the bundle has no splits.json")
    by_patient: dict[tuple[int, str], list[str]] = defaultdict(list)
    for rel, label, patient in splits["parts"]["report"]:
        by_patient[(int(label), str(patient))].append(str(rel))
    rng = random.Random(args.seed)
    normals = [k for k in by_patient if k[0] == 0]
    positives = [k for k in by_patient if k[0] == 1]
    rng.shuffle(positives)
    n_norm_images = sum(len(by_patient[k]) for k in normals)
    want_pos = round(n_norm_images * args.prevalence / (1 - args.prevalence))
    chosen_pos, count = [], 0
    for key in positives:
        if count >= want_pos:
            break
        chosen_pos.append(key)
        count += len(by_patient[key])
    patients = normals + chosen_pos
    rng.shuffle(patients)

    work = Path(tempfile.mkdtemp(prefix="chestaid-recal-"))
    try:
        fit, held = [], []
        for key in patients:  # a patient's images all go to one side
            side = fit if len(fit) < args.fit_cases else held
            side.extend((rel, key[0]) for rel in by_patient[key])
        print(
            f"{len(fit)} fitting studies, {len(held)} held-back studies; prevalence "
            f"{np.mean([y for _, y in fit + held]):.2f}, gamma {args.gamma}, {args.size} px"
        )

        def write(cases: list[tuple[str, int]], folder: Path) -> dict[str, int]:
            folder.mkdir(parents=True)
            truth = {}
            for i, (rel, y) in enumerate(cases):
                uid = write_dx(
                    site_shift(args.data / rel, size=args.size, gamma=args.gamma),
                    folder / f"{i:04d}.dcm",
                )
                truth[uid] = y
            return truth

        fit_truth = write(fit, work / "fit")
        held_truth = write(held, work / "held")

        daemon = Daemon(
            work / "node", sections={"logging": {"level": "WARNING"}, "model": {"threads": 2}}
        )
        daemon.start()
        try:
            assert (
                storescu(sorted((work / "fit").iterdir()), daemon.port, timeout=600).returncode == 0
            )
            wait_until(daemon.terminal, timeout=600, what="fitting studies scored")
            engine = make_engine(daemon.db_url)
            sessions = make_session_factory(engine)
            for uid, y in fit_truth.items():
                with writing(sessions) as session:
                    label = FeedbackLabel.PNEUMONIA if y else FeedbackLabel.NO_PNEUMONIA
                    record_feedback(
                        session, study_instance_uid=uid, label=label, user="site-radiologist"
                    )
            engine.dispose()
            fitted = daemon.cli(
                "calibration", "fit", "--min-cases", "100", "--user", "admin"
            ).stdout
            print(fitted)
            version = int(re.search(r"calibration version (\d+)", fitted).group(1))  # type: ignore[union-attr]
            reviewed = daemon.cli("calibration", "review", str(version)).stdout
            print(reviewed)
            changes = re.search(r"--confirm-changes (\d+)", reviewed).group(1)  # type: ignore[union-attr]
            print(
                daemon.cli(
                    "calibration",
                    "activate",
                    str(version),
                    "--confirm-changes",
                    changes,
                    "--user",
                    "admin",
                ).stdout
            )
            assert (
                storescu(sorted((work / "held").iterdir()), daemon.port, timeout=600).returncode
                == 0
            )
            wait_until(daemon.terminal, timeout=600, what="held-back studies scored")
            rows = daemon.query(
                "SELECT i.study_instance_uid, r.logit, r.score, r.above_threshold, r.calibration_version"
                " FROM instances i JOIN jobs j ON j.instance_id = i.id JOIN results r ON r.job_id = j.id"
            )
        finally:
            daemon.stop()

        held_rows = [r for r in rows if r[0] in held_truth]
        assert all(r[4] == version for r in held_rows), (
            "held-back studies not scored with the new version"
        )
        labels = np.array([held_truth[r[0]] for r in held_rows])
        logits = np.array([r[1] for r in held_rows])
        after_p = np.array([r[2] for r in held_rows])
        after_called = np.array([bool(r[3]) for r in held_rows])
        bundle = load_bundle(bundle_path)
        before_p = bundle.calibrator.predict_proba(logits)
        threshold = bundle.threshold or 0.5
        before = rates(before_p, labels, before_p >= threshold)
        after = rates(after_p, labels, after_called)
        report = json.loads(fitted[fitted.index("{") :])
        print(f"\non {len(held_rows)} held-back studies ({int(labels.sum())} pneumonia):")
        print(
            f"{'':<12} | {'before (bundle, T, thr ' + format(threshold, '.5f') + ')':<36} | after (local v{version}: {report['comparison']['chosen']}, thr {report['threshold']:.4f})"
        )
        print("-" * 100)
        for key in ("ECE", "sensitivity", "specificity"):
            print(f"{key:<12} | {before[key]:<36} | {after[key]}")
        print(
            f"\nAUC is unchanged by recalibration; target sensitivity {report['target_sensitivity']}."
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
