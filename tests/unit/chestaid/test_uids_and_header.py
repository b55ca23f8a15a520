"""UID syntax (PS3.5 9.1) and the receiver's strict header read."""

from __future__ import annotations

import io
import zlib
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import DeflatedExplicitVRLittleEndian

from chestaid.errors import CorruptImageError, ImageTooLargeError, InvalidUIDError
from chestaid.imaging import check_uid, read_dicom_header
from tests.dicom_factory import make_dx
from tests.hostile_dicom import MB, deflate_bomb, meta_end


@pytest.mark.parametrize("uid", ["0", "1.2.0.3", "1.2.840.10008.5.1.4.1.1.1.1", "9" * 64, "1.2\0"])
def test_valid_uids_pass(uid: str) -> None:
    assert check_uid(uid, "SOP Instance UID") == uid.rstrip("\0")


@pytest.mark.parametrize(
    "uid",
    [
        "../../etc/x",
        "1.2.3/../../x",
        "ABC.DEF.ghi",
        "1.2.3%s%n",
        "1.02",
        "01",
        "1..2",
        "1.2.",
        ".1",
        "1.2 ",
        "1.2\n",
        "9" * 65,
        "",
        None,
    ],
)
def test_malformed_uids_are_refused_naming_the_attribute(uid: str | None) -> None:
    with pytest.raises(InvalidUIDError) as caught:
        check_uid(uid, "Study Instance UID")
    assert caught.value.attribute == "Study Instance UID"
    assert str(caught.value).startswith("Study Instance UID ")
    if uid and len(uid) > 3:  # "(PS3.5 9.1)" holds ".1"
        assert uid not in str(caught.value)


def _encoded(ds: pydicom.Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def test_a_header_reads_up_to_the_pixel_data() -> None:
    ds = make_dx(rows=32, cols=32)
    header = read_dicom_header(io.BytesIO(_encoded(ds)))
    assert header.SOPInstanceUID == ds.SOPInstanceUID and "PixelData" not in header
    assert header.file_meta.TransferSyntaxUID == ds.file_meta.TransferSyntaxUID


def test_a_deflated_header_reads_as_the_plain_one() -> None:
    ds = make_dx(rows=32, cols=32, transfer_syntax=DeflatedExplicitVRLittleEndian)
    header = read_dicom_header(io.BytesIO(_encoded(ds)))
    assert header.StudyInstanceUID == ds.StudyInstanceUID and "PixelData" not in header


def test_an_element_cut_short_is_refused() -> None:
    raw = _encoded(make_dx(rows=32, cols=32))
    end = meta_end(raw)
    with pytest.raises(CorruptImageError, match="cut short"):
        read_dicom_header(io.BytesIO(raw[: end + 8] + b"\x10\x00\x10\x00PN\xff\x7fxx"))


def test_a_deflate_bomb_is_refused_at_the_budget(tmp_path: Path) -> None:
    path = tmp_path / "bomb.dcm"
    deflate_bomb(path, 40 * MB)
    with pytest.raises(ImageTooLargeError):
        read_dicom_header(path, max_inflated_bytes=8 * MB)
    assert read_dicom_header(path, max_inflated_bytes=64 * MB).Rows > 0


def test_a_truncated_deflate_stream_is_refused() -> None:
    raw = _encoded(make_dx(rows=64, cols=64, transfer_syntax=DeflatedExplicitVRLittleEndian))
    end = meta_end(raw)
    assert zlib.decompressobj(-zlib.MAX_WBITS).decompress(raw[end:])
    with pytest.raises(CorruptImageError):
        read_dicom_header(io.BytesIO(raw[: end + (len(raw) - end) // 2]))
