"""The one way an image to be scored is read: the worker, the web and ``chestaid predict``.

:func:`read_for_scoring` tells DICOM from PNG and JPEG by the content, decodes the
image and refuses it with a typed :class:`~chestaid.errors.ImageError` for the same
reasons wherever it is called, so a corrupt, truncated or oversized file ends the
same way in the worker (a failed job), the web (an HTTP status) and the command line
(a refused file). Whatever a decoder trips over on untrusted bytes is the file's
fault and is reported as :class:`~chestaid.errors.CorruptImageError`.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from pydicom.dataset import Dataset
from pydicom.errors import BytesLengthException, InvalidDicomError

from chestaid.errors import ChestAidError, CorruptImageError, UnknownFormatError
from chestaid.imaging.dicom_file import is_decoder_panic, read_dicom_dataset
from chestaid.imaging.dicom_grey import dataset_to_grey
from chestaid.imaging.grey_image import DEFAULT_MAX_PIXELS, GreyImage
from chestaid.imaging.raster import JPEG_MAGIC, PNG_MAGIC, read_raster
from chestaid.imaging.reduced import NeededSize

Source = str | os.PathLike[str] | bytes | BinaryIO

DICOM_PREFIX_OFFSET = 128  # "DICM" follows the 128-byte preamble of a Part-10 file
_HEAD = DICOM_PREFIX_OFFSET + 4

# What pydicom, PIL and their decoders raise on hostile or corrupt input beyond what the
# readers already type (a deferred element, a sequence item or a header value can fail
# to parse wherever it is first touched, including in a caller's screen).
_UNTRUSTED_INPUT_ERRORS: tuple[type[BaseException], ...] = (
    ValueError,
    TypeError,
    KeyError,
    IndexError,
    AttributeError,
    ArithmeticError,
    EOFError,
    OSError,
    SyntaxError,
    NotImplementedError,
    RuntimeError,
    RecursionError,
    MemoryError,
    struct.error,
    zlib.error,
    InvalidDicomError,
    BytesLengthException,
)

# A probe of an unknown file as a bare dataset fails with any of these.
_NOT_A_DATASET: tuple[type[BaseException], ...] = (CorruptImageError, *_UNTRUSTED_INPUT_ERRORS)


@dataclass(frozen=True)
class ScoringInput:
    """An image read for scoring, with its DICOM dataset when it came as DICOM."""

    image: GreyImage
    # The DICOM header (pixel data deferred, read from the source on use), for the
    # caller's own checks and outputs; None for a PNG or JPEG.
    dataset: Dataset | None


def read_for_scoring(
    source: Source,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    screen: Callable[[Dataset], None] | None = None,
    max_decoded_bytes: int | None = None,
    need: NeededSize | None = None,
) -> ScoringInput:
    """Read a DICOM, PNG or JPEG file to be scored, recognised by its content.

    The format is told from the content, never from a file name (the spool names
    every file ``.dcm``, an upload's name is the browser's): DICOM by its Part-10
    prefix, PNG and JPEG by their signatures; anything else is read as a bare DICOM
    dataset and refused as an unknown format if it is not one.

    Args:
        source: a path, the file's bytes, or a binary stream at the file's start (kept
            open by the caller while the returned dataset is used).
        max_pixels: the pixel budget, checked before any pixel is decoded.
        max_decoded_bytes: the budget of decoded bytes (pixels x channels x bytes per
            sample, as the header declares them), checked before any pixel is decoded;
            None for none.
        screen: called with a DICOM dataset before its pixels are decoded; it refuses
            the image by raising a :class:`~chestaid.errors.ChestAidError`, which is
            passed on as it is (the worker skips ChestAid's own outputs this way).
        need: the least resolution the caller's uses of the image need (see
            :func:`~chestaid.imaging.reduced.needed_size`): a DICOM image whose codec
            can decode a lower resolution directly is decoded at the lowest that still
            has it (:attr:`GreyImage.full_shape` keeps its stored size). None decodes
            at full size.

    Returns:
        The grey image, and the dataset when the source is DICOM.

    Raises:
        CorruptImageError: empty, unreadable, truncated or corrupt.
        UnknownFormatError: not a DICOM, PNG or JPEG file.
        UnsupportedImageError: colour, multi-frame, or another raster format.
        NotChestRadiographError: the DICOM attributes say it is not a frontal chest
            radiograph.
        ImageTooLargeError: over ``max_pixels``, or a deflated dataset that inflates
            beyond its budget.
        DecodedSizeError: over ``max_decoded_bytes``.
    """
    try:
        return _read(source, max_pixels, screen, max_decoded_bytes, need)
    except ChestAidError:
        raise
    except _UNTRUSTED_INPUT_ERRORS as exc:
        raise CorruptImageError(f"the file cannot be decoded: {type(exc).__name__}") from exc
    except BaseException as exc:  # a decoder's panic is a BaseException; all else goes on
        if not is_decoder_panic(exc):
            raise
        raise CorruptImageError(f"the file cannot be decoded: the decoder failed ({exc})") from exc


def _read(
    source: Source,
    max_pixels: int,
    screen: Callable[[Dataset], None] | None,
    max_decoded_bytes: int | None,
    need: NeededSize | None,
) -> ScoringInput:
    head, name = _head(source)
    if head[DICOM_PREFIX_OFFSET:_HEAD] == b"DICM":
        ds = read_dicom_dataset(source)
    elif head.startswith((PNG_MAGIC, JPEG_MAGIC)):
        image = read_raster(source, max_pixels=max_pixels, max_decoded_bytes=max_decoded_bytes)
        return ScoringInput(image, None)
    else:
        ds = _bare_dataset(source, name)
    if screen is not None:
        screen(ds)
    grey = dataset_to_grey(
        ds, max_pixels=max_pixels, max_decoded_bytes=max_decoded_bytes, need=need
    )
    return ScoringInput(grey, ds)


def _head(source: Source) -> tuple[bytes, Path | None]:
    """The first bytes of the source, and its path when it is one; refuse an empty file.

    A stream is left where it was.
    """
    if isinstance(source, bytes):
        head, name = source[:_HEAD], None
    elif isinstance(source, str | os.PathLike):
        name = Path(source)
        try:
            with name.open("rb") as fh:
                head = fh.read(_HEAD)
        except OSError as exc:
            raise CorruptImageError(f"cannot read {name}: {exc.strerror or exc}") from exc
    else:
        start = source.tell()
        head, name = source.read(_HEAD), None
        source.seek(start)
    if not head:
        raise CorruptImageError(f"{name if name is not None else 'the file'} is empty (0 bytes)")
    return head, name


def _bare_dataset(source: Source, name: Path | None) -> Dataset:
    """The source read as a DICOM dataset without preamble; an unknown format if it is not."""
    try:
        return read_dicom_dataset(source)
    except _NOT_A_DATASET as exc:
        what = name.name if name is not None else "the file"
        raise UnknownFormatError(f"{what} is not a DICOM, PNG or JPEG file") from exc


def read_image(path: str | os.PathLike[str], *, max_pixels: int = DEFAULT_MAX_PIXELS) -> GreyImage:
    """Read a DICOM, PNG or JPEG file to a grey image, as :func:`read_for_scoring` does.

    Raises:
        CorruptImageError, UnknownFormatError, UnsupportedImageError,
        NotChestRadiographError, ImageTooLargeError: as for :func:`read_for_scoring`.
    """
    return read_for_scoring(path, max_pixels=max_pixels).image


def read_dicom(
    source: str | os.PathLike[str] | bytes | BinaryIO, *, max_pixels: int = DEFAULT_MAX_PIXELS
) -> GreyImage:
    """Read a DICOM file (path, bytes or binary stream) into a grey image.

    A Part-10 file is expected; a bare dataset without the preamble and file meta is
    read too.

    Raises:
        CorruptImageError, UnsupportedImageError, NotChestRadiographError,
        ImageTooLargeError: as for :func:`dataset_to_grey`, and for unreadable files.
    """
    return dataset_to_grey(read_dicom_dataset(source), max_pixels=max_pixels)
