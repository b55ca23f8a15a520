"""Each plot writes a PNG that opens."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from chestaid import plots
from chestaid.metrics import confusion_at, reliability_curve


def test_every_plot_writes_a_png(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    p = np.clip(0.35 * y + rng.random(200) * 0.65, 0, 1)
    written = [
        plots.plot_roc(p, y, tmp_path / "roc.png", auc_ci=(0.8, 0.75, 0.85)),
        plots.plot_pr(p, y, tmp_path / "pr.png"),
        plots.plot_reliability(
            {"a": reliability_curve(p, y), "b": reliability_curve(p**2, y)}, tmp_path / "rel.png"
        ),
        plots.plot_score_histograms(p, y, tmp_path / "hist.png", threshold=0.4),
        plots.plot_confusion(confusion_at(p, y, 0.4), tmp_path / "sub" / "cm.png", threshold=0.4),
    ]
    for path in written:
        with Image.open(path) as im:
            assert im.format == "PNG"
            assert im.size[0] > 250 and im.size[1] > 250
            assert np.asarray(im.convert("L")).std() > 5, "not a blank image"
