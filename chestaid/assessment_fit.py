"""Fitting the not-assessable checks of a bundle, and measuring what they refuse.

The feature density is fitted on the bundle's *training* images (upright, as read, no
augmentation); its limit is set on the held-out *validation* and *calibration* images
(a high quantile of their distances, with a margin), so the images the checks are
judged on -- the report split, and any external radiographs the user names -- played
no part in setting them. What matters is that real radiographs are not refused: the
report says how many of each set were, and why.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from chestaid.assessment import AssessmentSettings, FeatureDensity
from chestaid.bundle import Bundle, load_bundle, save_assessment
from chestaid.data import Example
from chestaid.errors import DatasetError
from chestaid.evaluation import select_cases
from chestaid.imaging import read_image
from chestaid.inference import Scorer
from chestaid.preprocess import preprocess
from chestaid.training.dataset import ImageDataset

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".dcm")


@torch.inference_mode()
def pooled_features(bundle: Bundle, dataset: ImageDataset, *, batch_size: int = 64) -> np.ndarray:
    """Pooled last-layer features (N, C) of every item, in order."""
    bundle.model.eval()
    out = [
        bundle.model.forward_heads(x).pooled.float().numpy()
        for x, _ in DataLoader(dataset, batch_size=batch_size, shuffle=False)
    ]
    return np.concatenate(out).astype(np.float64)


@dataclass(frozen=True)
class AssessmentFit:
    """The fitted settings and what they refuse on each set of real radiographs."""

    settings: AssessmentSettings
    refused: dict[str, dict[str, Any]]  # set name -> {"n", "refused", "rate", "reasons"}
    distance_quantiles: dict[str, dict[str, float]]

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "settings": self.settings.to_dict(),
            "refused": self.refused,
            "distance_quantiles": self.distance_quantiles,
        }


def external_images(folder: str | os.PathLike[str]) -> list[Path]:
    """Every image file under ``folder``, sorted.

    Raises:
        DatasetError: the folder holds no image.
    """
    root = Path(folder)
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DatasetError(f"no images ({', '.join(IMAGE_SUFFIXES)}) under {root}")
    return files


def refusals(scorer: Scorer, files: Sequence[Path], *, batch_size: int = 32) -> dict[str, Any]:
    """How many of ``files`` the scorer finds not assessable, and for which reasons."""
    reasons: Counter[str] = Counter()
    turned = 0
    for start in range(0, len(files), batch_size):
        chunk = files[start : start + batch_size]
        batch = torch.stack([preprocess(read_image(f).pixels, scorer.spec) for f in chunk])
        for prediction in scorer.score_batch(batch):
            if not prediction.assessment.assessable:
                reasons[str(prediction.assessment.reason)] += 1
            elif prediction.assessment.quarter_turns:
                turned += 1
    refused = sum(reasons.values())
    return {
        "n": len(files),
        "refused": refused,
        "rate": refused / max(1, len(files)),
        "reasons": dict(reasons),
        "turned_upright": turned,
    }


def fit_assessment(
    bundle_path: str | os.PathLike[str],
    data_dir: str | os.PathLike[str],
    *,
    external: Sequence[str | os.PathLike[str]] = (),
    non_chest: Sequence[str | os.PathLike[str]] = (),
    components: int = 32,
    quantile: float = 0.999,
    margin: float = 2.0,
    batch_size: int = 64,
) -> AssessmentFit:
    """Fit the feature density and its limit, store them in the bundle, and measure refusals.

    Args:
        bundle_path: the bundle (developed on ``data_dir``).
        data_dir: its development data; the bundle's own split is used.
        external: folders of real radiographs from elsewhere, only measured.
        non_chest: folders of pictures that are not chest radiographs, only measured
            (here a high refusal rate is the aim).
        components: principal directions of the density.
        quantile: of the held-out development distances...
        margin: ...times this is the limit beyond which an image is unfamiliar.
        batch_size: images per forward pass.

    Raises:
        DatasetError: ``data_dir`` is not the bundle's development data.
    """
    bundle = load_bundle(bundle_path)
    cases = select_cases(bundle, data_dir)
    if cases.source != "bundle split" or "train" not in cases.parts:
        raise DatasetError(
            f"{data_dir} is not the data {bundle.path} was developed on (its split does not match)"
        )
    spec = bundle.manifest.preprocessing

    def features(examples: list[Example]) -> np.ndarray:
        return pooled_features(
            bundle, ImageDataset(cases.base, examples, spec), batch_size=batch_size
        )

    density = FeatureDensity.fit(features(cases.parts["train"]), components=components)
    held_out = cases.parts["validation"] + cases.parts["calibration"]
    distances = density.distance(features(held_out))
    limit = float(np.quantile(distances, quantile) * margin)
    settings = AssessmentSettings(max_feature_distance=round(limit, 4))
    fitted_on = {
        "density": "train split",
        "limit": f"{quantile} quantile of validation + calibration distances x {margin}",
        "components": components,
    }
    save_assessment(bundle.path, settings, density, fitted_on=fitted_on)
    scorer = Scorer.from_bundle(load_bundle(bundle.path))
    refused = {
        "report split": refusals(
            scorer, [cases.base / e.relpath for e in cases.parts["report"]], batch_size=batch_size
        )
    }
    for folder in external:
        refused[f"external: {Path(folder).name}"] = refusals(
            scorer, external_images(folder), batch_size=batch_size
        )
    for folder in non_chest:
        refused[f"non-chest: {Path(folder).name}"] = refusals(
            scorer, external_images(folder), batch_size=batch_size
        )
    quantiles = {
        "held-out development": {
            f"q{q}": float(np.quantile(distances, q)) for q in (0.5, 0.9, 0.99, 0.999)
        }
    }
    for name, outcome in refused.items():
        logger.info(
            "%s: %d of %d refused (%.2f%%) %s",
            name,
            outcome["refused"],
            outcome["n"],
            100 * outcome["rate"],
            outcome["reasons"],
        )
    return AssessmentFit(settings=settings, refused=refused, distance_quantiles=quantiles)
