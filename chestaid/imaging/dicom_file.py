"""Reading a DICOM file's dataset, its pixel data deferred, deflate inflated within a budget.

A Part-10 file is expected; a bare dataset without preamble and file meta (as some
older systems write) is read too, its transfer syntax taken from how it is encoded.
:func:`read_dicom_header` is the receiver's stricter read of a Part-10 file's header:
every element complete, a deflated one inflated under the same budget while only the
header is kept in memory.
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path
from typing import BinaryIO, cast

import pydicom
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileDataset
from pydicom.errors import BytesLengthException, InvalidDicomError
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import _read_file_meta_info, read_dataset, read_preamble
from pydicom.tag import BaseTag, Tag
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from chestaid.errors import ConfigurationError, CorruptImageError, ImageTooLargeError
from chestaid.imaging.grey_image import DEFAULT_MAX_PIXELS

DEFER_SIZE = 1 << 20  # bytes: elements larger than this are read on first use
# The most a deflated dataset may inflate to: 16-bit pixel data of DEFAULT_MAX_PIXELS
# pixels and 64 MB for everything else. pydicom would inflate the whole body at once,
# so without a budget a 1 MB file can claim gigabytes.
DEFAULT_MAX_INFLATED_BYTES = 2 * DEFAULT_MAX_PIXELS + (64 << 20)
_INFLATE_CHUNK = 1 << 20  # bytes fed to zlib, and most taken from it, at a time
_PIXEL_DATA_TAGS = frozenset({0x7FE00008, 0x7FE00009, 0x7FE00010})  # float, double, other
_UNDEFINED_LENGTH = 0xFFFFFFFF

# What pydicom, its decoders and the pylibjpeg plugins raise on truncated or corrupt input.
DECODE_ERRORS = (
    InvalidDicomError,
    BytesLengthException,  # a value whose length is not a whole number of its VR's values
    EOFError,
    OSError,
    ValueError,
    KeyError,
    IndexError,
    TypeError,
    AttributeError,
    NotImplementedError,
    RuntimeError,
    struct.error,
    zlib.error,
    MemoryError,
)


def is_decoder_panic(exc: BaseException) -> bool:
    """Whether ``exc`` is a Rust decoder's panic on corrupt input (pylibjpeg-rle's, say).

    PyO3 raises a panic in Rust code as ``pyo3_runtime.PanicException``, which derives
    from BaseException (not Exception) and cannot be imported, so it is known by name.
    """
    kind = type(exc)
    return kind.__name__ == "PanicException" and kind.__module__ == "pyo3_runtime"


def read_dicom_dataset(
    source: str | os.PathLike[str] | bytes | BinaryIO,
    *,
    max_inflated_bytes: int = DEFAULT_MAX_INFLATED_BYTES,
) -> Dataset:
    """Read a DICOM file's dataset, its large elements (pixel data) deferred until used.

    A Part-10 file is expected; a bare dataset without preamble and file meta is read
    too. Deferring the pixel data means an image over the pixel budget is refused from
    its header without its pixels ever being read.

    A dataset in the Deflated Explicit VR Little Endian transfer syntax is inflated
    here, a megabyte of input at a time, and refused once its output passes
    ``max_inflated_bytes``; pydicom then reads the inflated bytes. The dataset keeps
    its file meta, so its Transfer Syntax UID is still the deflated one. Only the
    file meta is read to tell; any other transfer syntax is read as before.

    Args:
        source: a path, the file's bytes, or a binary stream at the file's start.
        max_inflated_bytes: the most bytes a deflated dataset may inflate to. The
            default, :data:`DEFAULT_MAX_INFLATED_BYTES`, holds 16-bit pixel data of
            :data:`DEFAULT_MAX_PIXELS` pixels plus 64 MB for the other elements.

    Returns:
        The dataset, with its file meta.

    Raises:
        CorruptImageError: not a readable DICOM file, or a corrupt or truncated
            deflate stream.
        ImageTooLargeError: a deflated dataset that inflates beyond
            ``max_inflated_bytes``.
        ConfigurationError: ``max_inflated_bytes`` is below 1.
    """
    if max_inflated_bytes < 1:
        raise ConfigurationError(f"max_inflated_bytes must be at least 1, not {max_inflated_bytes}")
    fp: str | os.PathLike[str] | BinaryIO = (
        io.BytesIO(source) if isinstance(source, bytes) else source
    )
    deflated = _read_deflated(fp, max_inflated_bytes)
    if deflated is not None:
        return deflated
    try:
        ds: Dataset = pydicom.dcmread(fp, force=False, defer_size=DEFER_SIZE)
    except InvalidDicomError:
        ds = _read_bare_dataset(fp)
    except DECODE_ERRORS as exc:
        raise CorruptImageError(f"not a readable DICOM file ({type(exc).__name__})") from exc
    return ds


def _read_deflated(fp: str | os.PathLike[str] | BinaryIO, limit: int) -> Dataset | None:
    """The dataset if ``fp`` holds a deflated one, inflated within ``limit`` bytes; else None.

    A stream is left where it was when the dataset is not deflated.
    """
    if not isinstance(fp, str | os.PathLike):
        return _read_deflated_stream(fp, limit)
    try:
        fh = Path(fp).open("rb")  # noqa: SIM115 - closed below; only open's error is mapped here
    except OSError as exc:
        raise CorruptImageError(f"not a readable DICOM file ({type(exc).__name__})") from exc
    with fh:
        return _read_deflated_stream(fh, limit)


def _read_deflated_stream(fh: BinaryIO, limit: int) -> Dataset | None:
    """As :func:`_read_deflated`, for an open binary stream."""
    start = fh.tell()
    # The file meta is read by the very functions dcmread uses (the preamble optional,
    # as when a bare dataset is read with force=True), so whatever pydicom would
    # inflate is caught here: a wrong (0002,0000) group length, or a file without the
    # DICM prefix whose dataset starts with a file meta group, cannot slip past.
    try:
        preamble = read_preamble(fh, True)
        file_meta = _read_file_meta_info(fh)
        deflated = file_meta.get("TransferSyntaxUID") == DeflatedExplicitVRLittleEndian
        body = fh.tell()
        empty = fh.read(1) == b""
    except DECODE_ERRORS:
        # dcmread reads the file meta the same way, so it fails the same way, before
        # anything could be inflated; its error is reported as it always was.
        deflated, empty = False, True
    if not deflated or empty:  # pydicom inflates nothing when the dataset is empty
        fh.seek(start)
        return None
    fh.seek(body)
    buffer = DicomBytesIO(_inflate(fh, limit))
    name = getattr(fh, "name", None)
    if isinstance(name, str):  # as pydicom names the buffer it inflates to
        buffer.name = name
    try:
        dataset = read_dataset(cast(BinaryIO, buffer), False, True, defer_size=DEFER_SIZE)
    except DECODE_ERRORS as exc:
        raise CorruptImageError(f"not a readable DICOM file ({type(exc).__name__})") from exc
    if preamble is None and "SOPClassUID" not in dataset:
        # Without the prefix it is only taken as DICOM when it reads as a dataset, as
        # for any bare dataset.
        raise CorruptImageError("not a DICOM file: no DICM prefix and no readable dataset")
    ds = FileDataset(buffer, dataset, preamble, file_meta, False, True)
    ds.set_original_encoding(False, True, dataset.original_character_set)
    return ds


def _inflate(fh: BinaryIO, limit: int) -> bytes:
    """Inflate the raw deflate stream from ``fh``; refuse output beyond ``limit`` bytes.

    Raises:
        ImageTooLargeError: the stream inflates to more than ``limit`` bytes.
        CorruptImageError: the stream is corrupt or ends before its last block.
    """
    inflater = _Inflater(fh, limit)
    # A BytesIO, not a list to join: getvalue() hands over its buffer without a copy,
    # so the peak stays near the inflated size rather than twice it.
    out = io.BytesIO()
    while piece := inflater.piece():
        out.write(piece)
    # Bytes after the end of the stream (padding) are ignored, as zlib.decompress does.
    return out.getvalue()


class _Inflater:
    """A raw deflate stream from ``fh``, inflated a piece at a time within ``limit`` bytes."""

    def __init__(self, fh: BinaryIO, limit: int) -> None:
        self._fh = fh
        self._limit = limit
        self._zlib = zlib.decompressobj(-zlib.MAX_WBITS)
        self.size = 0  # bytes inflated so far

    def piece(self) -> bytes:
        """The next inflated bytes (at most a megabyte); empty once the stream has ended.

        Raises:
            ImageTooLargeError: the stream inflates to more than ``limit`` bytes.
            CorruptImageError: the stream is corrupt or ends before its last block.
        """
        while not self._zlib.eof:
            try:
                data = self._zlib.unconsumed_tail or self._fh.read(_INFLATE_CHUNK)
                # Small pieces keep zlib's own output buffer small. Up to one byte more
                # than the budget is asked for: getting it means the stream is over budget.
                piece = self._zlib.decompress(
                    data, min(_INFLATE_CHUNK, self._limit - self.size + 1)
                )
            except (OSError, zlib.error) as exc:
                raise CorruptImageError(f"deflated dataset is corrupt: {exc}") from exc
            if not data and not piece:
                raise CorruptImageError(
                    "deflated dataset is truncated: its deflate stream does not end"
                )
            self.size += len(piece)
            if self.size > self._limit:
                raise ImageTooLargeError(
                    f"deflated dataset inflates beyond {self._limit / (1 << 20):.0f} MB"
                    f" ({self._limit} bytes), the most accepted"
                )
            if piece:
                return piece
        return b""


class _InflatingReader:
    """A deflate stream's output as a seekable file, inflated only as far as it is read.

    What has been read is kept (pydicom seeks back to look ahead); :meth:`drain`
    inflates the rest only to count it, so memory holds what was read and a piece.
    """

    def __init__(self, fh: BinaryIO, limit: int) -> None:
        self._inflater = _Inflater(fh, limit)
        self._kept = bytearray()
        self._pos = 0

    def read(self, size: int = -1) -> bytes:
        end = None if size < 0 else self._pos + size
        while end is None or len(self._kept) < end:
            piece = self._inflater.piece()
            if not piece:
                break
            self._kept += piece
        data = bytes(self._kept[self._pos : end])
        self._pos += len(data)
        return data

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_CUR:
            offset += self._pos
        elif whence != io.SEEK_SET:
            raise OSError("an inflating reader seeks from its start or where it is only")
        if offset < 0:
            raise OSError("negative seek position")
        self._pos = offset
        return offset

    def tell(self) -> int:
        return self._pos

    def drain(self) -> None:
        """Inflate the rest of the stream, letting it go, to check it ends within the budget."""
        while self._inflater.piece():
            pass


def read_dicom_header(
    source: str | os.PathLike[str] | BinaryIO,
    *,
    max_inflated_bytes: int = DEFAULT_MAX_INFLATED_BYTES,
) -> Dataset:
    """Read a Part-10 file's dataset up to its pixel data, each element read and whole.

    For a receiver checking what it was sent before accepting it. Every element is
    read and converted (so a broken one fails here, not later), and an element whose
    value is shorter than its length says is refused: pydicom would keep the short
    value and silently drop whatever followed.

    A deflated dataset is inflated a megabyte at a time: the header is kept (it is
    what is parsed) and the rest, pixel data included, is inflated only to be counted
    and let go, so memory stays near the header's size however far the stream
    inflates; it must end within ``max_inflated_bytes``, the budget
    :func:`read_dicom_dataset` reads under.

    Args:
        source: a path, or a binary stream at the file's start.
        max_inflated_bytes: the most bytes a deflated dataset may inflate to.

    Returns:
        The dataset without its pixel data, with its file meta.

    Raises:
        CorruptImageError: not a Part-10 file, an unknown transfer syntax, an element
            cut short or unreadable, or a corrupt or truncated deflate stream.
        ImageTooLargeError: a deflated dataset that inflates beyond
            ``max_inflated_bytes``.
        ConfigurationError: ``max_inflated_bytes`` is below 1.
    """
    if max_inflated_bytes < 1:
        raise ConfigurationError(f"max_inflated_bytes must be at least 1, not {max_inflated_bytes}")
    if not isinstance(source, str | os.PathLike):
        return _read_header_stream(source, max_inflated_bytes)
    try:
        fh = Path(source).open("rb")  # noqa: SIM115 - closed below; only open's error is mapped here
    except OSError as exc:
        raise CorruptImageError(f"not a readable DICOM file: {exc}") from exc
    with fh:
        return _read_header_stream(fh, max_inflated_bytes)


def _read_header_stream(fh: BinaryIO, limit: int) -> Dataset:
    """As :func:`read_dicom_header`, for an open binary stream."""
    try:
        read_preamble(fh, False)
        file_meta = _read_file_meta_info(fh)
        syntax = UID(file_meta.get("TransferSyntaxUID") or "")
        implicit, little = syntax.is_implicit_VR, syntax.is_little_endian
    except DECODE_ERRORS as exc:
        raise CorruptImageError(f"not a readable DICOM file: {exc}") from exc
    inflating = _InflatingReader(fh, limit) if syntax == DeflatedExplicitVRLittleEndian else None
    body = cast(BinaryIO, inflating) if inflating is not None else fh
    try:
        dataset = read_dataset(body, implicit, little, stop_when=_at_pixel_data)
        position, end = body.tell(), _end_of_last(dataset)
        _check_whole(dataset)
        if end is not None and end != position:
            raise CorruptImageError("the dataset ends inside an element's tag")
    except DECODE_ERRORS as exc:
        raise CorruptImageError(f"not a readable DICOM file: {type(exc).__name__}: {exc}") from exc
    if inflating is not None:
        inflating.drain()
    dataset.file_meta = file_meta
    return dataset


def _at_pixel_data(tag: BaseTag, vr: str | None, length: int) -> bool:
    return tag in _PIXEL_DATA_TAGS


def _end_of_last(ds: Dataset) -> int | None:
    """Where the last element read ends, before any is converted; None if unknown.

    Reading ends at the pixel data or at the end of the data; pydicom also ends,
    silently, on a few bytes too short for an element's tag, which is where a dataset
    cut inside an element's header ends: there, reading ended past this position.
    """
    last: RawDataElement | None = None
    for tag in list(ds.keys()):
        element = ds.get_item(tag, keep_deferred=True)
        if not isinstance(element, RawDataElement):
            return None  # a sequence of undefined length: it ends at its own delimiter
        if last is None or element.value_tell > last.value_tell:
            last = element
    if last is None or last.length == _UNDEFINED_LENGTH:
        return None
    return int(last.value_tell) + int(last.length)


def _check_whole(ds: Dataset) -> None:
    """Read every element, items included; refuse one cut short by the end of the data.

    Raises:
        CorruptImageError: an element's value is shorter than its length.
    """
    for tag in list(ds.keys()):
        raw = ds.get_item(tag, keep_deferred=True)
        if (
            isinstance(raw, RawDataElement)
            and raw.length not in (0, _UNDEFINED_LENGTH)
            and raw.value is not None
            and len(raw.value) != raw.length
        ):
            raise CorruptImageError(
                f"element {Tag(tag)} is cut short: the dataset ends inside its value"
            )
        element = ds[tag]
        if element.VR == "SQ":
            for item in element.value:
                _check_whole(item)


def _read_bare_dataset(fp: str | os.PathLike[str] | BinaryIO) -> Dataset:
    """Read a dataset that has no file meta; refuse anything that is not one."""
    if not isinstance(fp, str | os.PathLike):
        fp.seek(0)
    try:
        ds = pydicom.dcmread(fp, force=True, defer_size=DEFER_SIZE)
    except DECODE_ERRORS as exc:
        raise CorruptImageError(f"not a readable DICOM file ({type(exc).__name__})") from exc
    implicit, little = getattr(ds, "original_encoding", (None, None))
    if "SOPClassUID" not in ds or implicit is None or little is None:
        raise CorruptImageError("not a DICOM file: no DICM prefix and no readable dataset")
    if "TransferSyntaxUID" not in ds.file_meta:
        ds.file_meta.TransferSyntaxUID = (
            ImplicitVRLittleEndian
            if implicit
            else (ExplicitVRLittleEndian if little else ExplicitVRBigEndian)
        )
    return ds
