"""The shared preprocessing: shape, standardisation, determinism, and its manifest record."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from chestaid.errors import BundleError, ImageError
from chestaid.preprocess import PreprocessSpec, preprocess


def test_shape_dtype_and_standardisation() -> None:
    spec = PreprocessSpec(input_size=32, mean=0.5, std=0.25)
    image = np.full((32, 32), 0.75, dtype=np.float32)
    out = preprocess(image, spec)
    assert out.shape == (1, 32, 32) and out.dtype == torch.float32
    assert torch.allclose(out, torch.full((1, 32, 32), 1.0)), "(0.75 - 0.5) / 0.25"


def test_constant_image_stays_constant_after_resizing() -> None:
    out = preprocess(np.full((300, 250), 0.2, dtype=np.float32), PreprocessSpec(input_size=64))
    assert torch.allclose(out, torch.full_like(out, (0.2 - 0.5) / 0.25), atol=1e-6)


def test_stretch_resize_keeps_the_layout_of_a_non_square_image() -> None:
    image = np.zeros((200, 100), dtype=np.float32)
    image[:100, :] = 1.0  # top half bright
    image[:, 90:] = 0.5  # right edge strip
    out = preprocess(image, PreprocessSpec(input_size=50, mean=0.0, std=1.0))[0]
    assert out.shape == (50, 50)
    assert float(out[10, 10]) == pytest.approx(1.0, abs=1e-5)
    assert float(out[40, 10]) == pytest.approx(0.0, abs=1e-5)
    assert float(out[40, 48]) == pytest.approx(0.5, abs=1e-5), (
        "the strip is stretched to the right edge"
    )


def test_antialiasing_averages_fine_detail() -> None:
    stripes = np.tile(np.array([0.0, 1.0], dtype=np.float32), (256, 128))
    out = preprocess(stripes, PreprocessSpec(input_size=32, mean=0.0, std=1.0))
    assert torch.allclose(out, torch.full_like(out, 0.5), atol=0.02), "no aliasing into bands"


def test_deterministic_and_input_untouched() -> None:
    rng = np.random.default_rng(0)
    image = rng.random((123, 97), dtype=np.float32)
    copy = image.copy()
    spec = PreprocessSpec(input_size=40)
    assert torch.equal(preprocess(image, spec), preprocess(image, spec))
    assert np.array_equal(image, copy)


def test_bad_images_are_refused() -> None:
    with pytest.raises(ImageError):
        preprocess(np.zeros((3, 4, 4), dtype=np.float32), PreprocessSpec())
    with pytest.raises(ImageError):
        preprocess(np.zeros((0, 4), dtype=np.float32), PreprocessSpec())


def test_spec_round_trips_and_refuses_the_unknown() -> None:
    spec = PreprocessSpec(input_size=320, mean=0.45, std=0.3)
    record = spec.to_dict()
    assert record["resize"] == "stretch" and record["version"] == 1
    assert PreprocessSpec.from_dict(record) == spec
    with pytest.raises(BundleError, match="version"):
        PreprocessSpec.from_dict({**record, "version": 2})
    with pytest.raises(BundleError, match="unknown keys"):
        PreprocessSpec.from_dict({**record, "clahe": True})
    with pytest.raises(BundleError, match="resize"):
        PreprocessSpec.from_dict({**record, "resize": "letterbox"})
    with pytest.raises(BundleError):
        PreprocessSpec.from_dict({**record, "input_size": "big"})
