"""read_for_scoring: the format told by content, the dataset kept for DICOM, screens honoured."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pydicom.dataset import Dataset

from chestaid.errors import (
    ChestAidError,
    CorruptImageError,
    ImageTooLargeError,
    UnknownFormatError,
)
from chestaid.imaging import dataset_to_grey, read_for_scoring
from tests.dicom_factory import make_dx


def _part10(**kwargs: object) -> bytes:
    buffer = io.BytesIO()
    make_dx(rows=64, cols=80, **kwargs).save_as(buffer, enforce_file_format=True)  # type: ignore[arg-type]
    return buffer.getvalue()


def test_a_dicom_file_gives_its_image_and_its_dataset_from_path_bytes_and_stream(
    tmp_path: Path,
) -> None:
    data = _part10()
    path = tmp_path / "file.bin"  # told by the DICM prefix, not the suffix
    path.write_bytes(data)
    expected = dataset_to_grey(make_dx(rows=64, cols=80)).pixels
    for source in (path, data, io.BytesIO(data)):
        read = read_for_scoring(source)
        assert read.dataset is not None and read.dataset.Rows == 64
        assert read.image.source_format == "dicom"
        np.testing.assert_array_equal(read.image.pixels, expected)


def test_a_bare_dataset_without_preamble_is_read_as_dicom() -> None:
    data = _part10()
    (length,) = np.frombuffer(data[140:144], dtype="<u4")
    bare = data[144 + int(length) :]
    assert bare[128:132] != b"DICM"
    read = read_for_scoring(bare)
    assert read.dataset is not None and read.dataset.Rows == 64
    assert read.image.pixels.shape == (64, 80)


def test_a_png_has_no_dataset() -> None:
    buffer = io.BytesIO()
    Image.fromarray(np.full((20, 30), 100, dtype=np.uint8)).save(buffer, format="PNG")
    read = read_for_scoring(buffer.getvalue())
    assert read.dataset is None and read.image.source_format == "png"
    np.testing.assert_allclose(read.image.pixels, 100 / 255, atol=1e-6)


def test_unknown_content_is_an_unknown_format_whatever_its_name(tmp_path: Path) -> None:
    noise = np.random.default_rng(0).bytes(3000)
    with pytest.raises(UnknownFormatError, match="not a DICOM, PNG or JPEG"):
        read_for_scoring(noise)
    named = tmp_path / "x.dcm"
    named.write_bytes(noise)
    with pytest.raises(UnknownFormatError, match=r"x\.dcm is not a DICOM"):
        read_for_scoring(named)
    png = tmp_path / "really_a.dcm"
    Image.fromarray(np.zeros((4, 4), dtype=np.uint8)).save(png, format="PNG")
    assert read_for_scoring(png).image.source_format == "png"
    with pytest.raises(CorruptImageError, match="empty"):
        read_for_scoring(b"")


class _RefusedError(ChestAidError):
    pass


def test_the_screen_sees_the_header_before_the_pixels_are_decoded() -> None:
    data = _part10()
    seen: list[str] = []

    def refuse(ds: Dataset) -> None:
        seen.append(str(ds.SOPInstanceUID))
        raise _RefusedError("no")

    # The budget would refuse the pixels; the screen runs first and its error is kept.
    with pytest.raises(_RefusedError):
        read_for_scoring(data, max_pixels=10, screen=refuse)
    assert len(seen) == 1
    with pytest.raises(ImageTooLargeError):
        read_for_scoring(data, max_pixels=10, screen=lambda ds: None)


def test_what_a_screen_trips_over_in_the_file_is_corrupt() -> None:
    def trips(ds: Dataset) -> None:
        raise ValueError("a header value that does not parse")

    with pytest.raises(CorruptImageError, match="ValueError"):
        read_for_scoring(_part10(), screen=trips)
