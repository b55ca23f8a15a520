"""Does test-time augmentation pay? Validation ROC-AUC of a bundle with and without it.

Scores the bundle's own validation split (never the report split, which judges the
final model) plain, left-right flipped, and at small shifts of scale, and reports
ROC-AUC and the cost in forward passes of each combination. Prints a table.

    python benchmarks/experiment_tta.py BUNDLE DATA_DIR
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import numpy as np
import torch
from torch.nn import functional as F

from chestaid.bundle import load_bundle, read_splits
from chestaid.data import discover, splits_from_json
from chestaid.metrics import roc_auc
from chestaid.training.dataset import ImageDataset

View = Callable[[torch.Tensor], torch.Tensor]


def zoom(factor: float, black: float) -> View:
    """Centre crop (factor > 1) or pad (factor < 1) and resize back to the input size."""

    def view(x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-1]
        scaled = F.interpolate(x, scale_factor=factor, mode="bilinear", antialias=True)
        new = scaled.shape[-1]
        if new >= size:
            start = (new - size) // 2
            return scaled[..., start : start + size, start : start + size]
        pad = size - new
        return F.pad(scaled, (pad // 2, pad - pad // 2, pad // 2, pad - pad // 2), value=black)

    return view


def views(black: float) -> dict[str, View]:
    """The views compared; ``black`` is image value 0 after standardisation."""
    return {
        "plain": lambda x: x,
        "flip": lambda x: torch.flip(x, dims=[-1]),
        "zoom 1.08": zoom(1.08, black),
        "zoom 0.93": zoom(0.93, black),
    }


def main() -> None:
    """Score every view once, then report ROC-AUC of each mean-of-logits combination."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle")
    parser.add_argument("data_dir")
    parser.add_argument("--split", default="validation")
    args = parser.parse_args()
    bundle = load_bundle(args.bundle)
    stored = read_splits(bundle.path)
    if stored is None:
        raise SystemExit("the bundle has no stored split")
    base, _ = discover(args.data_dir, classes=bundle.manifest.classes)
    examples = splits_from_json(stored)[args.split]
    spec = bundle.manifest.preprocessing
    dataset = ImageDataset(base, examples, spec)
    all_views = views(-spec.mean / spec.std)
    labels = dataset.labels
    inputs = torch.stack([dataset[i][0] for i in range(len(dataset))])
    logits: dict[str, np.ndarray] = {}
    with torch.inference_mode():
        for name, view in all_views.items():
            out = [bundle.model(view(chunk))[:, 0] for chunk in inputs.split(64)]
            logits[name] = torch.cat(out).double().numpy()
    combos = [
        ("plain",),
        ("flip",),
        ("zoom 1.08",),
        ("zoom 0.93",),
        ("plain", "flip"),
        ("plain", "zoom 1.08", "zoom 0.93"),
        tuple(all_views),
    ]
    print(f"test-time augmentation on the {args.split} split: {len(labels)} images")
    print(f"{'views':<40} {'passes':>6} {'ROC-AUC':>8}")
    for combo in combos:
        mean = np.mean([logits[v] for v in combo], axis=0)
        print(f"{' + '.join(combo):<40} {len(combo):>6} {roc_auc(mean, labels):>8.4f}")


if __name__ == "__main__":
    main()
