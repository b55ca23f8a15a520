"""Deflated datasets are inflated under a budget: a deflate bomb is refused cheaply.

pydicom inflates a Deflated Explicit VR Little Endian body in one call, so a file of
a few hundred kilobytes can claim gigabytes. ``read_dicom_dataset`` inflates it
itself, at most ``max_inflated_bytes``; these tests build bombs of zeros and measure
the peak memory of a fresh interpreter reading one.
"""

from __future__ import annotations

import io
import json
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian

from chestaid.errors import ConfigurationError, CorruptImageError, ImageTooLargeError
from chestaid.imaging import (
    DEFAULT_MAX_INFLATED_BYTES,
    DEFAULT_MAX_PIXELS,
    DEFER_SIZE,
    read_dicom,
    read_dicom_dataset,
)
from tests.dicom_factory import make_dx, require_tool

MB = 1 << 20
BOMB_BYTES = 300 * MB  # what the big bomb's body inflates to
SMALL_LIMIT = 16 * MB
MEMORY_MARGIN_KB = 100 * 1024  # ru_maxrss is in kilobytes on Linux
REPO = Path(__file__).resolve().parents[3]
PIXEL_DATA = 0x7FE00010


def _encoded(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _meta_end(data: bytes) -> int:
    """Where the dataset starts: after the (0002,0000) group length's 12 bytes and the group."""
    assert data[128:132] == b"DICM"
    (length,) = struct.unpack_from("<I", data, 140)
    return 144 + int(length)


def _bomb(inflated_pixel_bytes: int) -> bytes:
    """A deflated DX whose Pixel Data inflates to that many zero bytes; small on disk.

    The zeros are fed to the compressor a megabyte at a time, so building the bomb
    never holds what it inflates to.
    """
    ds = make_dx(transfer_syntax=DeflatedExplicitVRLittleEndian)
    del ds.PixelData
    head = _encoded(ds)
    end = _meta_end(head)
    deflater = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    parts = [
        head[:end],
        deflater.compress(zlib.decompress(head[end:], -zlib.MAX_WBITS)),
        # (7FE0,0010) OB, explicit VR little endian: tag, VR, 2 reserved bytes, length.
        deflater.compress(struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OB", 0, inflated_pixel_bytes)),
    ]
    zeros = bytes(MB)
    for _ in range(inflated_pixel_bytes // MB):
        parts.append(deflater.compress(zeros))
    parts.append(deflater.flush())
    return b"".join(parts)


@pytest.fixture(scope="module")
def big_bomb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("bomb") / "bomb.dcm"
    path.write_bytes(_bomb(BOMB_BYTES))
    return path


# Run in a fresh interpreter: ru_maxrss is a high-water mark, and in the test process
# earlier tests may already have raised it beyond what one read could add.
_MEASURE = """
import io, json, resource, sys
from pathlib import Path
from chestaid.errors import ChestAidError
from chestaid.imaging import read_dicom_dataset

path, how, limit = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
source = {
    "path": lambda: path,
    "bytes": path.read_bytes,
    "stream": lambda: io.BytesIO(path.read_bytes()),
}[how]()
kwargs = {"max_inflated_bytes": limit} if limit else {}
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    read_dicom_dataset(source, **kwargs)
    outcome = "read"
except ChestAidError as exc:
    outcome = f"{type(exc).__name__}: {exc}"
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"outcome": outcome, "growth_kb": after - before}))
"""


def _measure(path: Path, how: str, limit: int | None) -> tuple[str, int]:
    """What reading ``path`` does in a fresh interpreter, and its peak RSS growth in kB."""
    done = subprocess.run(
        [sys.executable, "-c", _MEASURE, str(path), how, str(limit or 0)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    return str(result["outcome"]), int(result["growth_kb"])


def test_the_bomb_is_small_on_disk_and_huge_inflated(big_bomb: Path) -> None:
    data = big_bomb.read_bytes()
    assert len(data) < MB
    assert BOMB_BYTES > DEFAULT_MAX_INFLATED_BYTES
    header = pydicom.dcmread(io.BytesIO(data[: _meta_end(data)]), stop_before_pixels=True)
    assert header.file_meta.TransferSyntaxUID == DeflatedExplicitVRLittleEndian


@pytest.mark.parametrize("how", ["path", "bytes", "stream"])
def test_a_bomb_is_refused_within_a_small_budget(big_bomb: Path, how: str) -> None:
    outcome, growth_kb = _measure(big_bomb, how, SMALL_LIMIT)
    assert outcome.startswith("ImageTooLargeError: "), outcome
    assert "deflated dataset inflates beyond 16 MB" in outcome
    assert growth_kb < MEMORY_MARGIN_KB, f"peak RSS grew by {growth_kb} kB"


@pytest.mark.parametrize("how", ["path", "bytes"])
def test_the_default_budget_refuses_a_bomb_bigger_than_it(big_bomb: Path, how: str) -> None:
    outcome, growth_kb = _measure(big_bomb, how, None)
    assert outcome.startswith("ImageTooLargeError: "), outcome
    assert f"inflates beyond {round(DEFAULT_MAX_INFLATED_BYTES / MB)} MB" in outcome
    assert f"({DEFAULT_MAX_INFLATED_BYTES} bytes)" in outcome
    # At most the budget itself is inflated before the refusal, never the whole bomb.
    assert growth_kb < DEFAULT_MAX_INFLATED_BYTES // 1024 + MEMORY_MARGIN_KB, growth_kb


def test_the_default_budget_fits_the_largest_16_bit_image_the_pixel_budget_allows() -> None:
    assert DEFAULT_MAX_INFLATED_BYTES >= 2 * DEFAULT_MAX_PIXELS + 64 * MB


@pytest.fixture
def small_bomb() -> bytes:
    return _bomb(64 * MB)


def test_a_bomb_without_preamble_is_refused_too(small_bomb: bytes) -> None:
    # pydicom reads a file without the DICM prefix as a bare dataset, file meta
    # included, and inflates it as well.
    with pytest.raises(ImageTooLargeError, match="inflates beyond 16 MB"):
        read_dicom_dataset(small_bomb[132:], max_inflated_bytes=SMALL_LIMIT)


def test_a_bomb_with_a_wrong_group_length_is_refused_too(small_bomb: bytes) -> None:
    # pydicom walks the file meta elements and ignores a wrong (0002,0000).
    for wrong in (0, 4, 0xFFFFFFFF):
        data = small_bomb[:140] + struct.pack("<I", wrong) + small_bomb[144:]
        with pytest.raises(ImageTooLargeError, match="inflates beyond 16 MB"):
            read_dicom_dataset(data, max_inflated_bytes=SMALL_LIMIT)


def _deflated_dx(**kwargs: object) -> bytes:
    return _encoded(make_dx(transfer_syntax=DeflatedExplicitVRLittleEndian, **kwargs))  # type: ignore[arg-type]


@pytest.mark.parametrize("how", ["path", "bytes"])
def test_a_corrupt_or_truncated_deflate_stream_is_corrupt(how: str, tmp_path: Path) -> None:
    data = _deflated_dx()
    end = _meta_end(data)
    truncated = data[: end + (len(data) - end) // 2]
    # A first byte of 0xFF starts a block of the reserved type 3: invalid at once.
    corrupt = data[:end] + b"\xff" + data[end + 1 :]
    for bad, match in ((truncated, "truncated"), (corrupt, "corrupt")):
        source: bytes | Path = bad
        if how == "path":
            source = tmp_path / "bad.dcm"
            source.write_bytes(bad)
        with pytest.raises(CorruptImageError, match=match):
            read_dicom_dataset(source)


def test_the_budget_is_exact() -> None:
    data = _deflated_dx()
    size = len(zlib.decompress(data[_meta_end(data) :], -zlib.MAX_WBITS))
    assert read_dicom_dataset(data, max_inflated_bytes=size).Rows == 64
    with pytest.raises(ImageTooLargeError, match="inflates beyond"):
        read_dicom_dataset(data, max_inflated_bytes=size - 1)


def test_a_budget_below_one_byte_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="max_inflated_bytes"):
        read_dicom_dataset(_deflated_dx(), max_inflated_bytes=0)


@pytest.mark.parametrize("how", ["path", "bytes", "stream"])
def test_a_deflated_dx_reads_like_its_uncompressed_original(how: str, tmp_path: Path) -> None:
    original = make_dx(bits_stored=12, window=(2000, 3000))
    data = _deflated_dx(bits_stored=12, window=(2000, 3000))
    assert len(data) < len(_encoded(original)), "the body must really be deflated"
    path = tmp_path / "deflated.dcm"
    path.write_bytes(data)
    source = {"path": path, "bytes": data, "stream": io.BytesIO(data)}[how]
    ds = read_dicom_dataset(source)
    assert ds.file_meta.TransferSyntaxUID == DeflatedExplicitVRLittleEndian
    assert np.array_equal(ds.pixel_array, original.pixel_array)
    assert ds.pixel_array.std() > 100, "the image must have content for the check to mean anything"
    again = {"path": path, "bytes": data, "stream": io.BytesIO(data)}[how]
    reference = read_dicom(_encoded(original)).pixels
    assert np.array_equal(read_dicom(again).pixels, reference)


def test_large_deflated_pixel_data_is_read_from_the_inflated_bytes(tmp_path: Path) -> None:
    # Over DEFER_SIZE, so pydicom defers it: the deferred read must come from the
    # inflated buffer, not from the deflated file on disk.
    original = make_dx(rows=1024, cols=640, bits_stored=12)
    path = tmp_path / "large.dcm"
    make_dx(
        path, rows=1024, cols=640, bits_stored=12, transfer_syntax=DeflatedExplicitVRLittleEndian
    )
    assert DEFER_SIZE < 1024 * 640 * 2, "big enough to be deferred"
    ds = read_dicom_dataset(path)
    assert ds.get_item(PIXEL_DATA, keep_deferred=True).value is None
    assert np.array_equal(ds.pixel_array, original.pixel_array)


def test_a_dcmtk_deflated_dx_reads_like_its_original(tmp_path: Path) -> None:
    dcmconv = require_tool("dcmconv", "dcmtk")
    original, deflated = tmp_path / "original.dcm", tmp_path / "deflated.dcm"
    make_dx(original, bits_stored=14)
    subprocess.run(
        [dcmconv, "+td", str(original), str(deflated)], check=True, capture_output=True, timeout=60
    )
    ds = read_dicom_dataset(deflated)
    assert ds.file_meta.TransferSyntaxUID == DeflatedExplicitVRLittleEndian
    assert np.array_equal(ds.pixel_array, pydicom.dcmread(original).pixel_array)


def test_other_transfer_syntaxes_still_defer_their_pixel_data(tmp_path: Path) -> None:
    path = tmp_path / "large.dcm"
    make_dx(path, rows=1024, cols=640, bits_stored=12, transfer_syntax=ExplicitVRLittleEndian)
    assert DEFER_SIZE < 1024 * 640 * 2
    ds = read_dicom_dataset(path)
    assert ds.get_item(PIXEL_DATA, keep_deferred=True).value is None
    assert ds.filename == str(path)
    assert ds.pixel_array.shape == (1024, 640)
