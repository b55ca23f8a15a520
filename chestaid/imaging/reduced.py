"""Decoding a DICOM image at a reduced resolution, where its codec can do so directly.

The model sees a small square and the pictures made from an image (the Secondary
Capture, the web's display) are shrunk to about a thousand pixels, so a 2500 x 2048
radiograph is decoded at full size only to be averaged down. Two codecs can skip
that work:

- JPEG 2000 holds the image at every level of its wavelet transform: decoding ``r``
  levels fewer gives the image at 1/2**r of its size per side, the wavelet's
  low-pass band, so no aliasing (OpenJPEG through Pillow; the DICOM decoder plugin
  offers no reduced decode);
- 8-bit JPEG baseline can be decoded with a scaled inverse DCT at 1/2, 1/4 or 1/8
  (libjpeg through Pillow's ``draft``).

The level is the largest at which the image still has :class:`NeededSize`: its longer
side at least the largest picture made from it, both sides at least twice the model's
input. Anything out of the ordinary (another transfer syntax, a 12-bit JPEG, a
codestream whose own header disagrees with the DICOM header, a decoder that fails)
is left to the full-resolution decoder, which refuses what it always refused.
"""

from __future__ import annotations

import io
import logging
import struct
from dataclasses import dataclass

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.encaps import generate_frames
from pydicom.uid import JPEG2000, JPEG2000Lossless, JPEGBaseline8Bit

from chestaid.errors import ConfigurationError
from chestaid.imaging.dicom_file import DECODE_ERRORS

logger = logging.getLogger(__name__)

MAX_REDUCTION = 5  # levels: 1/32 per side is as far as a radiograph is ever shrunk
# A model input is stretched from at least this many times its side, so the anti-aliased
# resize of preprocessing still averages several decoded pixels into each input pixel.
INPUT_OVERSAMPLING = 2
JPEG_MAX_REDUCTION = 3  # libjpeg scales by 1/2, 1/4 and 1/8 at most
_J2K_START = b"\xff\x4f\xff\x51"  # SOC, then SIZ: a bare codestream, as DICOM stores it
_COD, _COC, _SOT = 0xFF52, 0xFF53, 0xFF90
_SIZ_FIXED = struct.Struct(">HHIIIIIIIIH")  # Lsiz, Rsiz, sizes and offsets, Csiz
_MARKER = struct.Struct(">HH")  # a marker and its segment's length
# What Pillow raises on a codestream it cannot decode, beyond what pydicom's readers raise.
_PILLOW_ERRORS = (*DECODE_ERRORS, SyntaxError, Image.DecompressionBombError)


@dataclass(frozen=True)
class NeededSize:
    """The least resolution an image's consumers need, in pixels.

    Attributes:
        longer_side: the longer side of the largest picture made from the image.
        shorter_side: the fewest pixels either side may have (the model's need).
    """

    longer_side: int
    shorter_side: int

    def __post_init__(self) -> None:
        if self.longer_side < 1 or self.shorter_side < 1:
            raise ConfigurationError(
                f"a needed size must be at least 1 pixel a side, not {self.longer_side}"
                f" x {self.shorter_side}"
            )


def needed_size(*, input_size: int, picture_side: int) -> NeededSize:
    """What a scored image must keep: twice the model's input, and the largest picture.

    Args:
        input_size: the side of the model's square input.
        picture_side: the longer side of the largest picture made from the image (the
            Secondary Capture's, the web display's).

    Returns:
        The needed size.

    Raises:
        ConfigurationError: a side below 1.
    """
    model_side = INPUT_OVERSAMPLING * input_size
    return NeededSize(longer_side=max(picture_side, model_side), shorter_side=model_side)


def reduced_side(side: int, level: int) -> int:
    """A side's length decoded ``level`` levels down: ceil(side / 2**level), as both codecs give."""
    return -(-side >> level)


def reduction_level(rows: int, columns: int, need: NeededSize, *, most: int = MAX_REDUCTION) -> int:
    """The largest level, up to ``most``, at which the image still has the needed size.

    Returns:
        0 when the image is to be decoded at full size.
    """
    level = 0
    while level < most:
        r, c = reduced_side(rows, level + 1), reduced_side(columns, level + 1)
        if max(r, c) < need.longer_side or min(r, c) < need.shorter_side:
            break
        level += 1
    return level


def decode_reduced(
    ds: Dataset, *, rows: int, columns: int, need: NeededSize
) -> tuple[np.ndarray, int] | None:
    """A single-frame grey image's stored values, decoded at a reduced resolution.

    The values are those the full decode gives (Bits Stored and Pixel Representation
    honoured), at 1/2**level of the size per side.

    Args:
        ds: the dataset, its header already checked (grey, one frame, within budget).
        rows, columns: the image's size from its header.
        need: the least resolution to keep.

    Returns:
        The values and the level, or None when the image is to be decoded at full size:
        no level can be skipped, the transfer syntax has no reduced decode, or the
        encoded image is not the plain case this reads (it goes to the full decoder,
        which reads or refuses it as always).
    """
    syntax = ds.file_meta.get("TransferSyntaxUID")
    if syntax in (JPEG2000Lossless, JPEG2000):
        decode = _decode_j2k
        most = MAX_REDUCTION
    elif syntax == JPEGBaseline8Bit:
        decode = _decode_jpeg
        most = JPEG_MAX_REDUCTION
    else:
        return None
    level = reduction_level(rows, columns, need, most=most)
    if level == 0 or rows * columns > (Image.MAX_IMAGE_PIXELS or rows * columns):
        # Past Pillow's own bomb limit the full decoder, within ChestAid's budget, reads it.
        return None
    try:
        frame = next(generate_frames(ds.PixelData, number_of_frames=1))
        decoded = decode(frame, ds, rows=rows, columns=columns, level=level)
    except _PILLOW_ERRORS as exc:
        logger.info("decoding at full size: the reduced decode failed (%s)", type(exc).__name__)
        return None
    if decoded is None:
        return None
    values, level = decoded
    if level == 0 or values.shape != (reduced_side(rows, level), reduced_side(columns, level)):
        return None
    return values, level


@dataclass(frozen=True)
class _Codestream:
    """What a JPEG 2000 codestream's main header says of its image."""

    columns: int
    rows: int
    precision: int
    signed: bool
    levels: int  # wavelet decomposition levels: the most that can be skipped


def _codestream_header(data: bytes) -> _Codestream | None:
    """The main header of a one-component codestream without offsets; None for any other."""
    if not data.startswith(_J2K_START) or len(data) < 4 + _SIZ_FIXED.size + 3:
        return None
    lsiz, _, xsiz, ysiz, xo, yo, _, _, _, _, components = _SIZ_FIXED.unpack_from(data, 4)
    if components != 1 or xo or yo or lsiz != _SIZ_FIXED.size + 3:
        return None
    ssiz, xr, yr = data[4 + _SIZ_FIXED.size : 4 + _SIZ_FIXED.size + 3]
    if xr != 1 or yr != 1:
        return None
    levels: list[int] = []
    position = 2 + 2 + lsiz  # past SOC and the SIZ segment
    while position + _MARKER.size < len(data):
        marker, length = _MARKER.unpack_from(data, position)
        if marker == _SOT or marker >> 8 != 0xFF or length < 2:
            break
        # COD: Scod, progression, layers (2 bytes), transform, then the levels;
        # COC (fewer than 257 components): Ccoc, Scoc, then the levels.
        offset = {_COD: 9, _COC: 6}.get(marker)
        if offset is not None and position + offset < len(data):
            levels.append(data[position + offset])
        position += 2 + length
    if not levels:
        return None
    return _Codestream(
        columns=xsiz,
        rows=ysiz,
        precision=(ssiz & 0x7F) + 1,
        signed=bool(ssiz & 0x80),
        levels=min(levels),
    )


def _decode_j2k(
    frame: bytes, ds: Dataset, *, rows: int, columns: int, level: int
) -> tuple[np.ndarray, int] | None:
    """A JPEG 2000 frame's values at most ``level`` levels down, and the level decoded.

    Fewer levels are skipped when the codestream has fewer. None if it is not the plain
    case, or if ``level`` is above 0 and the codestream has no level to skip.
    """
    header = _codestream_header(frame)
    if (
        header is None
        or (header.rows, header.columns) != (rows, columns)
        or header.precision != int(ds.get("BitsStored") or 0)
        or header.precision > 16
        or header.signed != bool(ds.get("PixelRepresentation"))
    ):
        return None
    used = min(level, header.levels)
    if used == 0 < level:
        return None
    with Image.open(io.BytesIO(frame), formats=["JPEG2000"]) as im:
        if im.size != (columns, rows) or im.mode not in ("L", "I;16"):
            return None
        im.reduce = used  # type: ignore[assignment, method-assign]  # Pillow's J2K setting
        im.load()
        decoded = np.asarray(im)
    # Pillow scales a component to its mode's range (a left shift) after moving a signed
    # one up by half its range; both are undone to get the stored values back.
    shift = (8 if im.mode == "L" else 16) - header.precision
    values = decoded >> shift if shift else decoded
    if header.signed:
        values = values.astype(np.int32) - (1 << (header.precision - 1))
    return values, used


def _decode_jpeg(
    frame: bytes, ds: Dataset, *, rows: int, columns: int, level: int
) -> tuple[np.ndarray, int] | None:
    """An 8-bit baseline JPEG frame's values at 1/2**level; None if it is not the plain case."""
    if int(ds.get("BitsStored") or 0) != 8 or ds.get("PixelRepresentation"):
        return None
    with Image.open(io.BytesIO(frame), formats=["JPEG"]) as im:
        if im.size != (columns, rows) or im.mode != "L":
            return None
        # draft picks the largest of libjpeg's scales that keeps at least this size.
        im.draft("L", (reduced_side(columns, level), reduced_side(rows, level)))
        im.load()
        return np.asarray(im), level
