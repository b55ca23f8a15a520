"""Decoding at a reduced resolution: the level chosen, the values, the score, the refusals."""

from __future__ import annotations

from io import BytesIO
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate, generate_frames
from pydicom.uid import JPEG2000, JPEG2000Lossless, JPEGBaseline8Bit, JPEGLSLossless

from chestaid.bundle import default_bundle_path, load_bundle
from chestaid.errors import ChestAidError, ConfigurationError, CorruptImageError
from chestaid.imaging import (
    NeededSize,
    dataset_to_grey,
    decode_reduced,
    needed_size,
    read_for_scoring,
    reduction_level,
)
from chestaid.imaging.reduced import _decode_j2k
from chestaid.inference import Scorer
from chestaid.preprocess import preprocess
from tests.dicom_factory import make_dx
from tests.intake_fuzz_target import CRASHERS, FUZZ_MAX_PIXELS, worker_screen

# Small enough that the test images (300 x 240) are decoded two levels down, at 75 x 60.
SMALL_NEED = NeededSize(longer_side=64, shorter_side=48)


def _area_down(values: np.ndarray, level: int) -> np.ndarray:
    """The mean of each 2**level square block (blocks at the edge padded with its values)."""
    step = 1 << level
    x = values.astype(np.float64)
    rows, cols = -(-x.shape[0] // step), -(-x.shape[1] // step)
    padded = np.pad(x, ((0, rows * step - x.shape[0]), (0, cols * step - x.shape[1])), mode="edge")
    blocks: np.ndarray = padded.reshape(rows, step, cols, step).mean(axis=(1, 3))
    return blocks


@pytest.mark.parametrize(
    ("rows", "cols", "need", "level"),
    [
        (2500, 2048, NeededSize(1024, 320), 1),  # the SC's 1024 keeps the second level
        (2048, 1680, NeededSize(1024, 320), 1),  # the longer side decides for the picture
        (1000, 800, NeededSize(1024, 320), 0),  # already under the picture's size
        (5000, 4096, NeededSize(1024, 320), 2),
        (4000, 400, NeededSize(64, 320), 0),  # the shorter side decides for the model
        (100_000, 100_000, NeededSize(1, 1), 5),  # never more than MAX_REDUCTION
    ],
)
def test_the_level_is_the_largest_that_keeps_the_needed_size(
    rows: int, cols: int, need: NeededSize, level: int
) -> None:
    assert reduction_level(rows, cols, need) == level


def test_the_need_is_twice_the_input_and_the_largest_picture() -> None:
    assert needed_size(input_size=160, picture_side=1024) == NeededSize(1024, 320)
    assert needed_size(input_size=640, picture_side=1024) == NeededSize(1280, 1280)
    with pytest.raises(ConfigurationError):
        NeededSize(0, 10)


J2K_CASES: dict[str, dict[str, Any]] = {
    "8bit": {"bits_stored": 8},
    "12bit": {"bits_stored": 12},
    "16bit": {"bits_stored": 16},
    "signed-12bit": {"bits_stored": 12, "signed": True},
    "signed-16bit": {"bits_stored": 16, "signed": True},
}


@pytest.mark.parametrize("name", J2K_CASES)
def test_jpeg2000_values_are_the_stored_values_at_every_level(name: str) -> None:
    ds = make_dx(rows=120, cols=100, transfer_syntax=JPEG2000Lossless, **J2K_CASES[name])
    full = ds.pixel_array.astype(np.int64)
    frame = next(generate_frames(ds.PixelData, number_of_frames=1))
    # At level 0 the values are exactly what the full decoder gives (sign, shift undone).
    whole = _decode_j2k(frame, ds, rows=120, columns=100, level=0)
    assert whole is not None
    np.testing.assert_array_equal(whole[0].astype(np.int64), full)
    span = float(full.max() - full.min())
    for level in (1, 2):
        reduced = _decode_j2k(frame, ds, rows=120, columns=100, level=level)
        assert reduced is not None and reduced[1] == level
        values = reduced[0].astype(np.float64)
        assert values.shape == (-(-120 >> level), -(-100 >> level))
        # The wavelet's low-pass band: a block average up to the image's pixel noise (5%
        # of its span), with the same mean; a wrong shift or sign offset would be off by
        # half the span or more.
        expected = _area_down(full, level)
        assert np.abs(values - expected).mean() < 0.1 * span
        assert abs(values.mean() - expected.mean()) < 0.01 * span


def test_a_dataset_is_decoded_reduced_only_when_asked() -> None:
    ds = make_dx(rows=300, cols=240, transfer_syntax=JPEG2000Lossless, window=(2000, 3000))
    full = dataset_to_grey(ds)
    assert full.pixels.shape == (300, 240) and full.reduction == 0
    assert full.full_shape == (300, 240)
    reduced = dataset_to_grey(ds, need=SMALL_NEED)
    assert reduced.reduction == 2 and reduced.pixels.shape == (75, 60)
    assert reduced.full_shape == (300, 240)
    assert reduced.pixels.dtype == np.float32
    # A block average up to the image's pixel noise, with the same mean grey.
    expected = _area_down(full.pixels, 2)
    assert np.abs(reduced.pixels - expected).mean() < 0.06
    assert abs(float(reduced.pixels.mean()) - float(expected.mean())) < 0.005


@pytest.mark.parametrize(
    ("syntax", "changes"),
    [
        (JPEGLSLossless, {}),  # no resolution levels: decoded whole
        (JPEG2000Lossless, {"BitsStored": 16, "HighBit": 15}),  # header and codestream differ
        (JPEG2000Lossless, {"PixelRepresentation": 1}),  # signed in the header only
    ],
    ids=["jpeg-ls", "bits-stored-differs", "signedness-differs"],
)
def test_anything_but_the_plain_case_is_decoded_at_full_size(
    syntax: str, changes: dict[str, Any]
) -> None:
    ds = make_dx(rows=300, cols=240, transfer_syntax=syntax, window=(2000, 3000))
    for keyword, value in changes.items():
        setattr(ds, keyword, value)
    assert decode_reduced(ds, rows=300, columns=240, need=SMALL_NEED) is None
    image = dataset_to_grey(ds, need=SMALL_NEED)
    assert image.reduction == 0 and image.pixels.shape == (300, 240)


def test_an_image_without_a_window_is_decoded_at_full_size() -> None:
    # Without a VOI the range is the image's own minimum to maximum, which a low-pass
    # narrows: the full decode keeps the grey levels the model was meant to see.
    ds = make_dx(rows=300, cols=240, transfer_syntax=JPEG2000Lossless)
    image = dataset_to_grey(ds, need=SMALL_NEED)
    assert image.reduction == 0
    np.testing.assert_array_equal(image.pixels, dataset_to_grey(ds).pixels)


def _with_frame(frame: bytes, **kwargs: Any) -> Dataset:
    ds = make_dx(rows=300, cols=240, transfer_syntax=JPEG2000Lossless)
    for keyword, value in kwargs.items():
        setattr(ds, keyword, value)
    ds.PixelData = encapsulate([frame])
    return ds


def _frame() -> bytes:
    ds = make_dx(rows=300, cols=240, transfer_syntax=JPEG2000Lossless)
    return next(generate_frames(ds.PixelData, number_of_frames=1))


@pytest.mark.parametrize("damage", ["truncated", "garbage", "header-only"])
def test_a_corrupt_codestream_is_refused_as_the_full_decoder_refuses_it(damage: str) -> None:
    frame = _frame()
    noise = np.random.default_rng(0).integers(0, 256, len(frame), dtype=np.uint8).tobytes()
    damaged = {
        "truncated": frame[: len(frame) // 2],
        "garbage": frame[:200] + noise[200:],
        "header-only": frame[:150],
    }[damage]
    with pytest.raises(CorruptImageError, match="cannot be decoded"):
        dataset_to_grey(_with_frame(damaged), need=SMALL_NEED)


def test_a_codestream_larger_than_its_header_is_never_decoded_reduced() -> None:
    # The header says 150 x 120 (within any budget); the codestream holds 300 x 240.
    ds = _with_frame(_frame(), Rows=150, Columns=120)
    assert decode_reduced(ds, rows=150, columns=120, need=NeededSize(1, 1)) is None
    with pytest.raises(CorruptImageError, match="shape"):
        dataset_to_grey(ds, need=NeededSize(1, 1))


def test_read_for_scoring_passes_the_need_and_keeps_the_stored_size() -> None:
    ds = make_dx(rows=300, cols=240, transfer_syntax=JPEG2000, window=(2000, 3000))
    buffer = BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    image = read_for_scoring(buffer.getvalue(), need=NeededSize(150, 120)).image
    assert image.reduction == 1 and image.pixels.shape == (150, 120)
    assert image.full_shape == (300, 240)


@pytest.fixture(scope="module")
def scorer() -> Scorer:
    return Scorer.from_bundle(load_bundle(default_bundle_path()))


# The suite's variants with a codec that can reduce (tests/unit/chestaid/test_imaging.py).
SCORED: dict[str, dict[str, Any]] = {
    "j2k-lossless-mono2-12bit-window": {
        "transfer_syntax": JPEG2000Lossless,
        "window": (2048, 3276),
    },
    "j2k-lossless-mono1-16bit-window": {
        "transfer_syntax": JPEG2000Lossless,
        "bits_stored": 16,
        "photometric": "MONOCHROME1",
        "window": (30000, 40000),
    },
    "j2k-lossless-signed-16bit-rescale-window": {
        "transfer_syntax": JPEG2000Lossless,
        "bits_stored": 16,
        "signed": True,
        "rescale": (0.5, 1024.0),
        "window": (1000.0, 9000.0),
    },
    "j2k-lossless-window-sigmoid": {
        "transfer_syntax": JPEG2000Lossless,
        "window": (2000, 2500),
        "voi_function": "SIGMOID",
    },
    "j2k-lossless-modality-lut-and-window": {
        "transfer_syntax": JPEG2000Lossless,
        "modality_lut": True,
        "window": (2000, 3000),
    },
    "j2k-lossless-voi-lut-sequence": {"transfer_syntax": JPEG2000Lossless, "voi_lut": True},
    "j2k-lossy-mono2": {"transfer_syntax": JPEG2000, "window": (2048, 3276)},
    "j2k-lossy-mono1": {
        "transfer_syntax": JPEG2000,
        "photometric": "MONOCHROME1",
        "window": (2048, 3276),
    },
    "jpeg-baseline-mono2": {
        "transfer_syntax": JPEGBaseline8Bit,
        "bits_stored": 8,
        "window": (128, 204),
    },
    "jpeg-baseline-mono1": {
        "transfer_syntax": JPEGBaseline8Bit,
        "bits_stored": 8,
        "photometric": "MONOCHROME1",
        "window": (128, 204),
    },
}


@pytest.mark.slow
@pytest.mark.parametrize("name", SCORED)
def test_the_logit_of_a_reduced_decode_agrees_with_the_full_one(scorer: Scorer, name: str) -> None:
    # 800 x 672 keeps one level for the default model (160 px: 320 a side) and a
    # 400-pixel picture, the realistic case of 2500 x 2048 against the SC's 1024.
    need = needed_size(input_size=scorer.spec.input_size, picture_side=400)
    ds = make_dx(rows=800, cols=672, **SCORED[name])
    full = dataset_to_grey(ds)
    reduced = dataset_to_grey(ds, need=need)
    assert reduced.reduction == 1 and reduced.pixels.shape == (400, 336)
    inputs = [preprocess(image.pixels, scorer.spec) for image in (full, reduced)]
    # The model input itself is nearly the same: preprocessing's anti-aliased resize of
    # the low-pass image gives what it gives from the full one.
    assert float(torch.abs(inputs[0] - inputs[1]).mean()) < 0.02 / scorer.spec.std
    logits = [scorer.score_pixels(image.pixels).logit for image in (full, reduced)]
    assert abs(logits[0] - logits[1]) <= 0.05, logits


@pytest.mark.parametrize("crasher", sorted(CRASHERS.glob("*.bin")), ids=lambda p: p.stem)
def test_a_stored_crasher_ends_in_a_typed_error_on_the_reduced_path(crasher: Path) -> None:
    with pytest.raises(ChestAidError):
        read_for_scoring(
            crasher.read_bytes(),
            max_pixels=FUZZ_MAX_PIXELS,
            screen=worker_screen,
            need=NeededSize(1, 1),
        )


@pytest.mark.parametrize("syntax", [JPEG2000Lossless, JPEG2000, JPEGBaseline8Bit])
def test_damaged_pixel_data_on_the_reduced_path_ends_in_an_image_or_a_typed_error(
    syntax: str,
) -> None:
    bits = 8 if syntax == JPEGBaseline8Bit else 12
    ds = make_dx(rows=64, cols=48, bits_stored=bits, transfer_syntax=syntax, window=(100, 200))
    frame = next(generate_frames(ds.PixelData, number_of_frames=1))
    rng = np.random.default_rng(7)
    outcomes = set()
    for _ in range(60):
        damaged = bytearray(frame)
        # A few bytes anywhere, the codestream's own header included.
        for position in rng.integers(0, len(damaged), size=int(rng.integers(1, 6))):
            damaged[position] = int(rng.integers(0, 256))
        ds.PixelData = encapsulate([bytes(damaged)])
        try:
            image = dataset_to_grey(ds, need=NeededSize(1, 1))
        except ChestAidError as exc:
            outcomes.add(type(exc).__name__)
            continue
        assert image.pixels.dtype == np.float32 and np.isfinite(image.pixels).all()
        assert image.pixels.min() >= 0.0 and image.pixels.max() <= 1.0
        outcomes.add("reduced" if image.reduction else "image")
    assert "reduced" in outcomes, "most damage is decoded on the reduced path: it was tried"
    assert outcomes <= {"reduced", "image", "CorruptImageError"}
