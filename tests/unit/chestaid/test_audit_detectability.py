"""Source detectability finds a planted source marker where it is, and not where it is not."""

from __future__ import annotations

import numpy as np
import pytest

from chestaid.audit.detectability import region_features, source_detectability
from chestaid.audit.masks import border_band_mask, lung_prior_mask
from chestaid.errors import ConfigurationError

SIZE = 32


def _two_sources(plant: str, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """20 patients of each source, 2 images each; source 1 carries the planted difference."""
    rng = np.random.default_rng(seed)
    lungs = lung_prior_mask(SIZE)
    images, sources, groups = [], [], []
    for source in (0, 1):
        for patient in range(20):
            for _ in range(2):
                image = 0.5 + 0.1 * rng.standard_normal((SIZE, SIZE))
                image[lungs] -= 0.2
                if source == 1 and plant == "border":
                    image[1:3, 1:5] = 1.0  # a marker in the top-left corner
                if source == 1 and plant == "lungs":
                    image[lungs] += 0.15  # brighter lungs, nothing else differs
                images.append(np.clip(image, 0, 1))
                sources.append(source)
                groups.append(f"{source}:{patient}")
    return np.array(images, dtype=np.float32), np.array(sources), np.array(groups)


def test_a_marker_in_the_border_makes_the_border_alone_give_the_source_away() -> None:
    images, sources, groups = _two_sources("border")
    band = border_band_mask(SIZE)
    result = source_detectability("border_only", images, band, sources, groups, n_boot=200)
    assert result.roc_auc > 0.95
    assert result.ci95[0] <= result.roc_auc <= result.ci95[1]
    assert result.area_fraction == pytest.approx(band.mean())
    inner = source_detectability("inner", images, ~band, sources, groups, n_boot=200)
    assert 0.3 < inner.roc_auc < 0.7, "the marker does not leak into the inner frame"


def test_a_difference_inside_the_lungs_only_is_found_in_the_whole_image_not_outside_lungs() -> None:
    images, sources, groups = _two_sources("lungs")
    lungs = lung_prior_mask(SIZE)
    whole = np.ones((SIZE, SIZE), dtype=bool)
    found = source_detectability("whole_image", images, whole, sources, groups, n_boot=200)
    hidden = source_detectability("lungs_masked", images, ~lungs, sources, groups, n_boot=200)
    assert found.roc_auc > 0.95, "the planted difference is real and findable"
    assert 0.3 < hidden.roc_auc < 0.7, "with the lungs hidden the sources look alike"


def test_pixels_outside_the_region_do_not_change_its_features() -> None:
    rng = np.random.default_rng(5)
    images = rng.random((3, SIZE, SIZE)).astype(np.float32)
    keep = border_band_mask(SIZE)
    changed = images.copy()
    changed[:, ~keep] = rng.random(int((~keep).sum()))
    assert np.array_equal(region_features(images, keep), region_features(changed, keep))
    assert not np.array_equal(region_features(images, ~keep), region_features(changed, ~keep))


def test_too_few_patients_for_grouped_folds_are_refused() -> None:
    images, sources, groups = _two_sources("border")
    few = np.concatenate([groups[sources == 0], np.array(["1:0", "1:1"] * 20)])
    with pytest.raises(ConfigurationError, match="patients"):
        source_detectability("whole", images, np.ones((SIZE, SIZE), bool), sources, few)
