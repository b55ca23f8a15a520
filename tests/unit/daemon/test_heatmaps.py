"""The stored Grad-CAM text and the image statistics: round trips and rejections."""

from __future__ import annotations

import json

import numpy as np
import pytest

from daemon.errors import DaemonError
from daemon.heatmaps import (
    CamError,
    ImageStatistics,
    ImageStatisticsError,
    decode_cam,
    encode_cam,
    image_statistics,
)


def test_a_map_round_trips_to_four_decimals_keeping_its_orientation() -> None:
    rng = np.random.default_rng(0)
    cam = rng.random((3, 5)).astype(np.float32)
    cam[0, 0], cam[2, 4] = 1.0, 0.0  # top-left brightest, bottom-right darkest
    text = encode_cam(cam)
    back = decode_cam(text)
    assert back.dtype == np.float32 and back.shape == (3, 5)
    assert np.abs(back - cam).max() <= 5e-5
    assert back[0, 0] == 1.0 and back[2, 4] == 0.0
    rows = json.loads(text)
    assert len(rows) == 3 and all(len(row) == 5 for row in rows)
    assert rows[0][1] == round(float(cam[0, 1]), 4)


def test_the_text_is_compact() -> None:
    text = encode_cam(np.array([[0.0, 0.123456], [1.0, 0.5]], dtype=np.float32))
    assert text == "[[0.0,0.1235],[1.0,0.5]]"


def test_an_integer_map_of_zeros_and_ones_is_accepted() -> None:
    assert decode_cam(encode_cam(np.eye(2, dtype=np.int64))).tolist() == [[1.0, 0.0], [0.0, 1.0]]


@pytest.mark.parametrize(
    "cam",
    [
        np.zeros(4, dtype=np.float32),  # 1-D
        np.zeros((2, 2, 2), dtype=np.float32),  # 3-D
        np.zeros((0, 3), dtype=np.float32),  # empty
        np.array([[0.5, np.nan]], dtype=np.float32),
        np.array([[0.5, np.inf]], dtype=np.float32),
        np.array([[0.5, 1.01]], dtype=np.float32),
        np.array([[-0.01, 0.5]], dtype=np.float32),
        np.array([["a", "b"]]),
        np.array([[True, False]]),
    ],
    ids=["1d", "3d", "empty", "nan", "inf", "above-one", "below-zero", "strings", "bools"],
)
def test_encoding_rejects_what_is_not_a_finite_unit_map(cam: np.ndarray) -> None:
    with pytest.raises(CamError):
        encode_cam(cam)


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        "",
        "{}",
        "[]",
        "[[]]",
        "[0.5, 0.5]",  # not rows
        "[[0.5, 0.5], [0.5]]",  # ragged
        '[[0.5, "0.5"]]',
        "[[0.5, true]]",
        "[[0.5, null]]",
        "[[0.5, NaN]]",
        "[[0.5, Infinity]]",
        "[[0.5, 1e999]]",
        "[[0.5, 1.5]]",
        "[[-0.5, 0.5]]",
        "[[[0.5]]]",
    ],
)
def test_decoding_rejects_text_that_is_not_a_finite_unit_map(text: str) -> None:
    with pytest.raises(CamError):
        decode_cam(text)


def test_map_errors_are_daemon_errors() -> None:
    assert issubclass(CamError, DaemonError)
    assert issubclass(ImageStatisticsError, DaemonError)


def test_image_statistics_of_a_known_image() -> None:
    pixels = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 1.0]], dtype=np.float32)
    stats = image_statistics(pixels)
    assert stats == ImageStatistics(mean=0.5, std=0.5, rows=2, cols=3)
    assert isinstance(stats.mean, float) and isinstance(stats.rows, int)


def test_image_statistics_accumulate_in_double_precision() -> None:
    # float32 accumulation drifts over millions of pixels; the mean must not.
    pixels = np.full((2048, 2048), 0.1, dtype=np.float32)
    stats = image_statistics(pixels)
    assert stats.mean == pytest.approx(float(np.float32(0.1)), abs=1e-9)
    assert stats.std == pytest.approx(0.0, abs=1e-9)
    assert (stats.rows, stats.cols) == (2048, 2048)


@pytest.mark.parametrize(
    "pixels",
    [
        np.zeros(4, dtype=np.float32),
        np.zeros((0, 4), dtype=np.float32),
        np.array([[0.5, np.nan]], dtype=np.float32),
    ],
    ids=["1d", "empty", "nan"],
)
def test_image_statistics_reject_what_is_not_an_image(pixels: np.ndarray) -> None:
    with pytest.raises(ImageStatisticsError):
        image_statistics(pixels)


@pytest.mark.parametrize(
    ("shape", "dtype"),
    [
        ((2500, 2048), np.float32),  # a radiograph: many blocks of rows
        ((37, 70_000), np.float32),  # rows wider than a block
        ((1, 5), np.float32),
        ((513, 129), np.float64),
        ((300, 257), np.uint16),
    ],
)
def test_image_statistics_equal_numpys_to_rounding(
    shape: tuple[int, int], dtype: type[np.generic]
) -> None:
    rng = np.random.default_rng(sum(shape))
    if dtype is np.uint16:
        pixels = rng.integers(0, 65535, size=shape).astype(np.uint16)
    else:
        pixels = rng.beta(2.0, 5.0, size=shape).astype(dtype)
    stats = image_statistics(pixels)
    assert stats.mean == float(np.mean(pixels, dtype=np.float64))
    assert stats.std == pytest.approx(float(np.std(pixels, dtype=np.float64)), rel=1e-12)
