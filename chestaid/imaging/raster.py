"""PNG and JPEG radiographs to a grey image in [0, 1]; colour images refused."""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, UnidentifiedImageError

from chestaid.errors import CorruptImageError, ImageTooLargeError, UnsupportedImageError
from chestaid.imaging.grey_image import DEFAULT_MAX_PIXELS, GreyImage, check_decoded_size

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8\xff"

# A grey radiograph saved as RGB has equal channels up to JPEG rounding; a colour image
# (a photograph, an annotated screenshot) does not. Deviations are in 8-bit units.
COLOUR_MEAN_DEVIATION = 2.0
COLOUR_P99_DEVIATION = 24.0


# The colour check reads the image in strips of about this many pixels, so its int16
# and float copies stay small however large the image is.
STRIP_PIXELS = 1 << 20
# PNG colour types and their channels (grey, RGB, palette, grey + alpha, RGB + alpha).
_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
_PNG_IHDR_END = 8 + 8 + 13
_THIRD = 21846  # ceil(2**16 / 3): (s * _THIRD) >> 16 == s // 3 for 0 <= s <= 765  # signature, chunk length and type, IHDR data


def _colour_deviations(im: Image.Image) -> np.ndarray:
    """How many pixels have each channel deviation (0-255): the largest difference of a
    channel from the pixel's channel mean, in 8-bit units. Counted strip by strip."""
    width, height = im.size
    rows = max(1, STRIP_PIXELS // width)
    counts = np.zeros(256, dtype=np.int64)
    for top in range(0, height, rows):
        with im.crop((0, top, width, min(height, top + rows))).convert("RGB") as strip:
            rgb = np.asarray(strip)
        red, green, blue = (rgb[..., i].astype(np.int16) for i in range(3))
        # The channel mean rounded down, (r + g + b) // 3 for sums up to 765, by a multiply
        # and a shift; the largest deviation from it is that of the largest or the smallest.
        mean = ((red + green + blue).astype(np.int32) * _THIRD >> 16).astype(np.int16)
        highest = np.maximum(np.maximum(red, green), blue)
        lowest = np.minimum(np.minimum(red, green), blue)
        deviation = np.maximum(highest - mean, mean - lowest)
        counts += np.bincount(deviation.ravel(), minlength=256)[:256]
    return counts


def _percentile(counts: np.ndarray, q: float) -> float:
    """The ``q``-th percentile of the values a histogram counts, interpolated linearly
    between neighbouring ranks as :func:`numpy.percentile` does by default."""
    n = int(counts.sum())
    position = q / 100.0 * (n - 1)
    low = int(np.floor(position))
    cumulative = np.cumsum(counts)
    # The value at rank r (from 0) is the first whose cumulative count exceeds r.
    below = int(np.searchsorted(cumulative, low, side="right"))
    above = int(np.searchsorted(cumulative, min(low + 1, n - 1), side="right"))
    return below + (above - below) * (position - low)


def _refuse_colour(im: Image.Image) -> None:
    counts = _colour_deviations(im)
    mean = float((counts * np.arange(counts.size)).sum() / counts.sum())
    p99 = _percentile(counts, 99.0)
    if mean > COLOUR_MEAN_DEVIATION or p99 > COLOUR_P99_DEVIATION:
        raise UnsupportedImageError(
            f"colour image (channels differ by {mean:.1f} on average, {p99:.0f} at the 99th "
            "percentile, of 255); a grey radiograph is expected"
        )


def _head(fp: str | os.PathLike[str] | BinaryIO, size: int) -> bytes:
    """The first bytes of a path or stream (a stream is left where it was)."""
    if isinstance(fp, str | os.PathLike):
        with Path(fp).open("rb") as fh:
            return fh.read(size)
    start = fp.tell()
    head = fp.read(size)
    fp.seek(start)
    return head


def _declared_layout(im: Image.Image, fmt: str, head: bytes) -> tuple[int, int]:
    """Channels and bits per sample as the file's header declares them, before decoding.

    PNG from its IHDR chunk (PIL reports a 16-bit RGBA PNG as 8-bit RGBA); JPEG from
    the frame header PIL has read.
    """
    if fmt == "PNG":
        if len(head) < _PNG_IHDR_END or head[12:16] != b"IHDR":
            raise CorruptImageError("the PNG does not start with its IHDR chunk")
        bits, colour_type = head[24], head[25]
        if colour_type not in _PNG_CHANNELS:
            raise CorruptImageError("the PNG declares an unknown colour type")
        return _PNG_CHANNELS[colour_type], bits
    return len(im.getbands()), int(getattr(im, "bits", 8) or 8)


def _unit_float(im: Image.Image, full_scale: float) -> np.ndarray:
    """A grey PIL image as float32 in [0, 1]; the image is closed once its pixels are out,
    so the decoded copy and the float copy are not both held longer than needed."""
    levels = np.asarray(im)
    im.close()
    pixels = levels.astype(np.float32)
    del levels
    np.divide(pixels, np.float32(full_scale), out=pixels)
    return np.clip(pixels, 0.0, 1.0, out=pixels)


def read_raster(
    source: str | os.PathLike[str] | bytes | BinaryIO,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_decoded_bytes: int | None = None,
) -> GreyImage:
    """Read a PNG or JPEG as grey: 8- and 16-bit grey kept, grey stored as RGB converted.

    ``source`` is a path, the file's bytes, or a binary stream at the file's start.
    Memory: the decoded image, then one grey copy and its float32 pixels; the colour
    check of an RGB(A) image works in strips.

    Raises:
        CorruptImageError: unreadable, truncated or corrupt.
        UnsupportedImageError: a raster format other than PNG or JPEG, or a colour image.
        ImageTooLargeError: over ``max_pixels`` (checked before the pixels are decoded).
        DecodedSizeError: the header declares more than ``max_decoded_bytes`` decoded
            (pixels x channels x bytes per sample; checked before the pixels are decoded).
    """
    fp: str | os.PathLike[str] | BinaryIO = (
        io.BytesIO(source) if isinstance(source, bytes) else source
    )
    try:
        head = _head(fp, _PNG_IHDR_END)
        with Image.open(fp) as im:
            fmt = (im.format or "").upper()
            if fmt not in ("PNG", "JPEG", "MPO"):
                raise UnsupportedImageError(
                    f"{fmt or 'unknown'} images are not read; use PNG, JPEG or DICOM"
                )
            width, height = im.size
            if width <= 0 or height <= 0:
                raise CorruptImageError(f"zero-size image ({height} x {width})")
            if width * height > max_pixels:
                raise ImageTooLargeError(
                    f"image of {height} x {width} = {width * height} pixels exceeds the budget of {max_pixels}"
                )
            channels, bits = _declared_layout(im, fmt, head)
            check_decoded_size(
                rows=height,
                columns=width,
                samples=channels,
                bits=bits,
                max_decoded_bytes=max_decoded_bytes,
            )
            im.load()
            if im.mode in ("I;16", "I;16B", "I;16L", "I"):
                pixels = _unit_float(im, 65535.0)
            elif im.mode == "L":
                pixels = _unit_float(im, 255.0)
            else:
                _refuse_colour(im)
                grey = im.convert("L")
                im.close()  # the colour copy goes before the float copy is made
                pixels = _unit_float(grey, 255.0)
    except (UnidentifiedImageError, Image.DecompressionBombError) as exc:
        raise CorruptImageError(f"not a readable PNG or JPEG: {exc}") from exc
    except (OSError, ValueError, SyntaxError, struct.error, zlib.error) as exc:
        raise CorruptImageError(f"truncated or corrupt image: {exc}") from exc
    return GreyImage(
        pixels=pixels,
        source_format="png" if fmt == "PNG" else "jpeg",
        modality=None,
        photometric=None,
        bits_stored=None,
    )
