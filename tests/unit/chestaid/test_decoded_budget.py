"""The decoded-byte budget: an image whose header declares too much is refused before decoding.

Issue 14 item 6: a 0.3 MB PNG can declare a 16-bit RGBA image of 40 megapixels (320 MB
decoded). Each file here declares a large image over tiny, undecodable pixel data: had
the reader decoded anything it would have failed as corrupt, so the typed
:class:`DecodedSizeError` shows the refusal came from the header alone.
"""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from chestaid.errors import CorruptImageError, DecodedSizeError, ImageTooLargeError
from chestaid.imaging import check_decoded_size, read_for_scoring, read_raster
from chestaid.imaging.raster import _colour_deviations, _percentile
from tests.dicom_factory import make_dx

MIB = 1 << 20


def png_header_only(width: int, height: int, *, bit_depth: int, colour_type: int) -> bytes:
    """A PNG whose IHDR declares ``width`` x ``height`` but whose IDAT is a few bad bytes."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", b"not zlib data")
        + chunk(b"IEND", b"")
    )


def jpeg_declaring(width: int, height: int) -> bytes:
    """A small RGB JPEG whose frame header is rewritten to declare ``width`` x ``height``,
    its scan cut short."""
    out = io.BytesIO()
    Image.fromarray(np.full((16, 16, 3), 128, dtype=np.uint8)).save(out, format="JPEG")
    data = bytearray(out.getvalue())
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data[: data.index(b"\xff\xda") + 20])


def test_a_png_declaring_a_huge_16_bit_rgba_image_is_refused_from_its_header() -> None:
    data = png_header_only(6000, 6000, bit_depth=16, colour_type=6)  # 288 MB decoded
    assert len(data) < 100
    with pytest.raises(DecodedSizeError, match="6000 x 6000 pixels x 4 channel") as refused:
        read_for_scoring(data, max_decoded_bytes=160 * MIB)
    assert "at most 160 MiB" in str(refused.value)
    assert isinstance(refused.value, ImageTooLargeError)  # the same 413 as too many pixels
    # Without a budget the same file reaches the decoder, which finds it corrupt.
    with pytest.raises(CorruptImageError):
        read_for_scoring(data)


@pytest.mark.parametrize(
    ("bit_depth", "colour_type", "declared"),
    [(16, 6, 8), (16, 2, 6), (8, 6, 4), (16, 0, 2), (8, 0, 1), (1, 0, 1), (8, 3, 1)],
)
def test_png_decoded_bytes_count_channels_and_whole_bytes_per_sample(
    bit_depth: int, colour_type: int, declared: int
) -> None:
    width, height = 500, 400
    data = png_header_only(width, height, bit_depth=bit_depth, colour_type=colour_type)
    budget = width * height * declared
    with pytest.raises(DecodedSizeError):
        read_raster(data, max_decoded_bytes=budget - 1)
    with pytest.raises(CorruptImageError):  # within the budget: decoded, and corrupt
        read_raster(data, max_decoded_bytes=budget)


def test_a_jpeg_declaring_a_huge_image_is_refused_from_its_header() -> None:
    data = jpeg_declaring(6000, 5000)
    with pytest.raises(DecodedSizeError, match="5000 x 6000 pixels x 3 channel"):
        read_for_scoring(data, max_decoded_bytes=64 * MIB)


def test_a_dicom_declaring_a_huge_image_is_refused_from_its_header() -> None:
    ds = make_dx(rows=64, cols=80, bits_stored=12)
    ds.Rows, ds.Columns = 6000, 5000  # 60 MB at 16 bits allocated; the data is 10 KB
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    with pytest.raises(DecodedSizeError, match="6000 x 5000 pixels x 1 channel"):
        read_for_scoring(out.getvalue(), max_decoded_bytes=32 * MIB)
    with pytest.raises(CorruptImageError):
        read_for_scoring(out.getvalue())


def test_check_decoded_size_multiplies_what_the_header_declares() -> None:
    assert check_decoded_size(rows=10, columns=20, samples=3, bits=12, max_decoded_bytes=None) == (
        10 * 20 * 3 * 2
    )
    assert (
        check_decoded_size(rows=10, columns=20, samples=1, bits=8, frames=5, max_decoded_bytes=1000)
        == 1000
    )
    with pytest.raises(DecodedSizeError, match="x 5 frames"):
        check_decoded_size(rows=10, columns=20, samples=1, bits=8, frames=5, max_decoded_bytes=999)


@pytest.mark.parametrize("seed", range(4))
def test_the_strip_by_strip_colour_statistics_equal_the_whole_image_ones(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    from chestaid.imaging import raster

    rng = np.random.default_rng(seed)
    rgb = rng.integers(0, 256, size=(123, 97, 3), dtype=np.uint8)
    if seed % 2:  # mostly grey, with a coloured corner
        rgb[:] = rgb[..., :1]
        rgb[:20, :30, 0] = 250
    monkeypatch.setattr(raster, "STRIP_PIXELS", 1000)  # many strips, the last one short
    counts = _colour_deviations(Image.fromarray(rgb))
    channels = rgb.astype(np.int16)
    deviation = np.abs(channels - channels.mean(axis=2, keepdims=True).astype(np.int16)).max(axis=2)
    assert counts.tolist() == np.bincount(deviation.ravel(), minlength=256).tolist()
    for q in (50.0, 90.0, 99.0, 99.9):
        assert _percentile(counts, q) == pytest.approx(float(np.percentile(deviation, q)))
