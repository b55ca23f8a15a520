"""PNG and JPEG radiographs to a grey image in [0, 1]; colour images refused."""

from __future__ import annotations

import io
import os
import struct
import zlib
from typing import BinaryIO

import numpy as np

from chestaid.errors import CorruptImageError, ImageTooLargeError, UnsupportedImageError
from chestaid.imaging.grey_image import DEFAULT_MAX_PIXELS, GreyImage

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8\xff"

# A grey radiograph saved as RGB has equal channels up to JPEG rounding; a colour image
# (a photograph, an annotated screenshot) does not. Deviations are in 8-bit units.
COLOUR_MEAN_DEVIATION = 2.0
COLOUR_P99_DEVIATION = 24.0


def _refuse_colour(rgb: np.ndarray) -> None:
    channels = rgb.astype(np.int16)
    deviation = np.abs(channels - channels.mean(axis=2, keepdims=True).astype(np.int16)).max(axis=2)
    mean, p99 = float(deviation.mean()), float(np.percentile(deviation, 99))
    if mean > COLOUR_MEAN_DEVIATION or p99 > COLOUR_P99_DEVIATION:
        raise UnsupportedImageError(
            f"colour image (channels differ by {mean:.1f} on average, {p99:.0f} at the 99th "
            "percentile, of 255); a grey radiograph is expected"
        )


def read_raster(
    source: str | os.PathLike[str] | bytes | BinaryIO, *, max_pixels: int = DEFAULT_MAX_PIXELS
) -> GreyImage:
    """Read a PNG or JPEG as grey: 8- and 16-bit grey kept, grey stored as RGB converted.

    ``source`` is a path, the file's bytes, or a binary stream at the file's start.

    Raises:
        CorruptImageError: unreadable, truncated or corrupt.
        UnsupportedImageError: a raster format other than PNG or JPEG, or a colour image.
        ImageTooLargeError: over ``max_pixels`` (checked before the pixels are decoded).
    """
    from PIL import Image, UnidentifiedImageError

    fp: str | os.PathLike[str] | BinaryIO = (
        io.BytesIO(source) if isinstance(source, bytes) else source
    )
    try:
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
            im.load()
            if im.mode in ("I;16", "I;16B", "I;16L", "I"):
                pixels = np.asarray(im, dtype=np.float32) / 65535.0
            elif im.mode == "L":
                pixels = np.asarray(im, dtype=np.float32) / 255.0
            else:
                _refuse_colour(np.asarray(im.convert("RGB")))
                pixels = np.asarray(im.convert("L"), dtype=np.float32) / 255.0
    except (UnidentifiedImageError, Image.DecompressionBombError) as exc:
        raise CorruptImageError(f"not a readable PNG or JPEG: {exc}") from exc
    except (OSError, ValueError, SyntaxError, struct.error, zlib.error) as exc:
        raise CorruptImageError(f"truncated or corrupt image: {exc}") from exc
    return GreyImage(
        pixels=np.clip(pixels, 0.0, 1.0).astype(np.float32, copy=False),
        source_format="png" if fmt == "PNG" else "jpeg",
        modality=None,
        photometric=None,
        bits_stored=None,
    )
