"""Reading chest radiographs: DICOM, PNG and JPEG to a grey float image in [0, 1].

For DICOM the display pipeline of PS3.3 C.11 is applied in order: the Modality LUT
(Rescale Slope/Intercept or the Modality LUT Sequence), the VOI LUT (the first
window, with its VOI LUT Function, or the VOI LUT Sequence's first LUT), then
MONOCHROME1 is inverted, so 1 is always bright as displayed. Bits Stored and Pixel
Representation are honoured by the decoder. The LUT arithmetic is done here in
float32 (the images are large and this runs for every study).

Anything that cannot be scored is refused with a typed error saying why, and the
pixel budget is checked from Rows and Columns before any pixel is decoded.
"""

from __future__ import annotations

import io
import logging
import math
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, cast

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileDataset
from pydicom.errors import InvalidDicomError
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import _read_file_meta_info, read_dataset, read_preamble
from pydicom.multival import MultiValue
from pydicom.uid import (
    ComputedRadiographyImageStorage,
    DeflatedExplicitVRLittleEndian,
    DigitalXRayImageStorageForPresentation,
    DigitalXRayImageStorageForProcessing,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    SecondaryCaptureImageStorage,
)

from chestaid.errors import (
    ConfigurationError,
    CorruptImageError,
    ImageTooLargeError,
    NotChestRadiographError,
    UnsupportedImageError,
)

logger = logging.getLogger(__name__)

DEFAULT_MAX_PIXELS = 40_000_000
CHEST_MODALITIES = frozenset({"CR", "DX", "DR"})
SC_MODALITIES = frozenset({"SC", "OT"})  # what Secondary Capture images carry
CHEST_BODY_PARTS = frozenset({"CHEST", "THORAX", "LUNG", "LUNGS", "CHEST_TO_PELVIS", "TORSO"})
# View Position values of a frontal projection; laterals (LL, RL), decubitus and obliques
# are not what the model was trained on. "AP"/"PA" are the defined terms; the others are
# what some vendors write.
FRONTAL_VIEWS = frozenset({"PA", "AP", "APS", "PAS", "FRONTAL", "AP_SUPINE", "AP_ERECT"})
# Image Type values that mark an image as not a diagnostic projection.
NON_DIAGNOSTIC_IMAGE_TYPES = frozenset({"LOCALIZER", "SCOUT"})
CHEST_SOP_CLASSES = frozenset(
    {
        ComputedRadiographyImageStorage,
        DigitalXRayImageStorageForPresentation,
        DigitalXRayImageStorageForProcessing,
        SecondaryCaptureImageStorage,
    }
)
GREY_PHOTOMETRICS = frozenset({"MONOCHROME1", "MONOCHROME2"})
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8\xff"
DICOM_SUFFIXES = frozenset({".dcm", ".dicom", ".dic"})
DEFER_SIZE = 1 << 20  # bytes: elements larger than this are read on first use
# The most a deflated dataset may inflate to: 16-bit pixel data of DEFAULT_MAX_PIXELS
# pixels and 64 MB for everything else. pydicom would inflate the whole body at once,
# so without a budget a 1 MB file can claim gigabytes.
DEFAULT_MAX_INFLATED_BYTES = 2 * DEFAULT_MAX_PIXELS + (64 << 20)
_INFLATE_CHUNK = 1 << 20  # bytes fed to zlib, and most taken from it, at a time

# What pydicom, its decoders and the pylibjpeg plugins raise on truncated or corrupt input.
_DECODE_ERRORS = (
    InvalidDicomError,
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


@dataclass(frozen=True)
class GreyImage:
    """A decoded radiograph: float32 pixels in [0, 1], 1 = bright as displayed."""

    pixels: np.ndarray
    source_format: str  # "dicom", "png" or "jpeg"
    modality: str | None
    photometric: str | None
    bits_stored: int | None


def read_image(path: str | os.PathLike[str], *, max_pixels: int = DEFAULT_MAX_PIXELS) -> GreyImage:
    """Read a DICOM, PNG or JPEG file, recognised by its content.

    Raises:
        CorruptImageError: unreadable, empty, truncated or corrupt.
        UnsupportedImageError: not a DICOM, PNG or JPEG file, or not scorable.
        NotChestRadiographError: the DICOM attributes say it is not a chest radiograph.
        ImageTooLargeError: over ``max_pixels``.
    """
    p = Path(path)
    try:
        with p.open("rb") as fh:
            head = fh.read(132)
    except OSError as exc:
        raise CorruptImageError(f"cannot read {p}: {exc.strerror or exc}") from exc
    if not head:
        raise CorruptImageError(f"{p} is empty (0 bytes)")
    if head[128:132] == b"DICM" or p.suffix.lower() in DICOM_SUFFIXES:
        return read_dicom(p, max_pixels=max_pixels)
    if head.startswith((PNG_MAGIC, JPEG_MAGIC)):
        return read_raster(p, max_pixels=max_pixels)
    raise UnsupportedImageError(f"{p.name} is not a DICOM, PNG or JPEG file")


def read_dicom(
    source: str | os.PathLike[str] | bytes | BinaryIO, *, max_pixels: int = DEFAULT_MAX_PIXELS
) -> GreyImage:
    """Read a DICOM file (path, bytes or binary stream) into a grey image.

    A Part-10 file is expected; a bare dataset without the preamble and file meta
    (as some older systems write) is read too, its transfer syntax taken from how it
    is encoded.

    Raises:
        CorruptImageError, UnsupportedImageError, NotChestRadiographError,
        ImageTooLargeError: as for :func:`dataset_to_grey`, and for unreadable files.
    """
    return dataset_to_grey(read_dicom_dataset(source), max_pixels=max_pixels)


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
    except _DECODE_ERRORS as exc:
        raise CorruptImageError(f"not a readable DICOM file: {exc}") from exc
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
        raise CorruptImageError(f"not a readable DICOM file: {exc}") from exc
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
    except _DECODE_ERRORS:
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
    except _DECODE_ERRORS as exc:
        raise CorruptImageError(f"not a readable DICOM file: {exc}") from exc
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
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    # A BytesIO, not a list to join: getvalue() hands over its buffer without a copy,
    # so the peak stays near the inflated size rather than twice it.
    out = io.BytesIO()
    size = 0
    while not inflater.eof:
        try:
            data = inflater.unconsumed_tail or fh.read(_INFLATE_CHUNK)
            # Small pieces keep zlib's own output buffer small. Up to one byte more
            # than the budget is asked for: getting it means the stream is over budget.
            piece = inflater.decompress(data, min(_INFLATE_CHUNK, limit - size + 1))
        except (OSError, zlib.error) as exc:
            raise CorruptImageError(f"deflated dataset is corrupt: {exc}") from exc
        if not data and not piece:
            raise CorruptImageError(
                "deflated dataset is truncated: its deflate stream does not end"
            )
        size += len(piece)
        if size > limit:
            raise ImageTooLargeError(
                f"deflated dataset inflates beyond {limit / (1 << 20):.0f} MB"
                f" ({limit} bytes), the most accepted"
            )
        out.write(piece)
    # Bytes after the end of the stream (padding) are ignored, as zlib.decompress does.
    return out.getvalue()


def _read_bare_dataset(fp: str | os.PathLike[str] | BinaryIO) -> Dataset:
    """Read a dataset that has no file meta; refuse anything that is not one."""
    if not isinstance(fp, str | os.PathLike):
        fp.seek(0)
    try:
        ds = pydicom.dcmread(fp, force=True, defer_size=DEFER_SIZE)
    except _DECODE_ERRORS as exc:
        raise CorruptImageError(f"not a readable DICOM file: {exc}") from exc
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


def check_chest_radiograph(ds: Dataset) -> None:
    """Refuse a dataset whose attributes say it is not a frontal chest radiograph.

    Absent attributes are not held against the image: only what is stated counts.

    Raises:
        NotChestRadiographError: another modality, SOP class or body part, a view
            position that is not frontal, or an image type marked localizer/scout.
    """
    modality = str(ds.get("Modality", "") or "").strip().upper()
    sop_class = str(ds.get("SOPClassUID", "") or "")
    is_sc = sop_class == SecondaryCaptureImageStorage
    if modality and modality not in CHEST_MODALITIES and not (is_sc and modality in SC_MODALITIES):
        raise NotChestRadiographError(
            f"modality {modality} is not a radiograph ChestAid scores (CR, DX, DR, or SC)"
        )
    if sop_class and sop_class not in CHEST_SOP_CLASSES and modality not in CHEST_MODALITIES:
        name = getattr(ds.SOPClassUID, "name", sop_class)
        raise NotChestRadiographError(
            f"SOP class {name} is not a CR, DX or Secondary Capture image"
        )
    body_part = str(ds.get("BodyPartExamined", "") or "").strip().upper()
    if body_part and body_part not in CHEST_BODY_PARTS:
        raise NotChestRadiographError(f"body part examined is {body_part}, not the chest")
    view = str(ds.get("ViewPosition", "") or "").strip().upper()
    if view and view not in FRONTAL_VIEWS:
        raise NotChestRadiographError(f"view position is {view}, not a frontal (PA/AP) view")
    image_type = {str(v).strip().upper() for v in _values(ds.get("ImageType"))}
    marked = sorted(image_type & NON_DIAGNOSTIC_IMAGE_TYPES)
    if marked:
        raise NotChestRadiographError(f"image type is {'/'.join(marked)}, not a radiograph")


def _values(value: object) -> list[object]:
    """The values of a possibly multi-valued attribute as a list (empty when absent)."""
    if value is None or value == "":
        return []
    if isinstance(value, MultiValue | list | tuple):
        return list(value)
    return [value]


def _number(ds: Dataset, keyword: str, default: float) -> float:
    """A numeric attribute (its first value when multi-valued), or ``default`` when absent.

    Raises:
        CorruptImageError: the attribute is present but not a finite number.
    """
    try:
        value = ds.get(keyword)
    except _DECODE_ERRORS as exc:
        raise CorruptImageError(f"{keyword} cannot be read: {exc}") from exc
    if value is None or value == "":
        return default
    try:
        number = _first(value)
    except (TypeError, ValueError, IndexError) as exc:
        raise CorruptImageError(f"{keyword} is not a number: {value!r}") from exc
    if not math.isfinite(number):
        raise CorruptImageError(f"{keyword} is not a finite number: {value!r}")
    return number


def _check_geometry(ds: Dataset, max_pixels: int) -> tuple[int, int]:
    if "PixelData" not in ds:
        raise CorruptImageError("the dataset has no pixel data")
    rows, cols = int(_number(ds, "Rows", 0)), int(_number(ds, "Columns", 0))
    if rows <= 0 or cols <= 0:
        raise CorruptImageError(f"zero-size image ({rows} x {cols})")
    if rows * cols > max_pixels:
        raise ImageTooLargeError(
            f"image of {rows} x {cols} = {rows * cols} pixels exceeds the budget of {max_pixels}"
        )
    frames = int(_number(ds, "NumberOfFrames", 1))
    if frames > 1:
        raise UnsupportedImageError(f"multi-frame image ({frames} frames); one frame is expected")
    samples = int(_number(ds, "SamplesPerPixel", 1))
    photometric = str(ds.get("PhotometricInterpretation", "") or "").strip().upper()
    if samples != 1 or photometric not in GREY_PHOTOMETRICS:
        raise UnsupportedImageError(
            f"colour image ({photometric or 'no photometric interpretation'}, "
            f"{samples} samples per pixel); a grey radiograph is expected"
        )
    return rows, cols


def _lut_table(item: Dataset, which: str, *, little_endian: bool) -> tuple[np.ndarray, int, int]:
    """A LUT item's data as float32, its first mapped input value and output bits."""
    try:
        entries, first, bits = (int(v) for v in item.LUTDescriptor)
        raw = item.LUTData
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise CorruptImageError(f"{which} LUT lacks a usable descriptor or data: {exc}") from exc
    entries = entries or 65536  # 0 means 2^16 entries (PS3.3 C.11.1.1)
    if isinstance(raw, bytes | bytearray):
        # LUT Data read as OW: 16-bit words in the dataset's byte order.
        table = np.frombuffer(raw, dtype="<u2" if little_endian else ">u2")
    else:
        table = np.atleast_1d(np.asarray(raw))
    if table.size < entries:
        raise CorruptImageError(
            f"{which} LUT has {table.size} entries, its descriptor says {entries}"
        )
    return table[:entries].astype(np.float32), first, bits


def _little_endian(ds: Dataset) -> bool:
    encoding = getattr(ds, "original_encoding", (None, None))
    return encoding[1] is not False


def _apply_table(x: np.ndarray, table: np.ndarray, first: int) -> np.ndarray:
    index = np.clip(np.rint(x).astype(np.int64) - first, 0, table.size - 1)
    result: np.ndarray = table[index]
    return result


def _first(value: object) -> float:
    if isinstance(value, pydicom.multival.MultiValue | list | tuple):
        return float(value[0])
    return float(value)  # type: ignore[arg-type]


def _window(ds: Dataset) -> tuple[float, float, str] | None:
    if "WindowCenter" not in ds or "WindowWidth" not in ds:
        return None
    try:
        centre, width = _first(ds.WindowCenter), _first(ds.WindowWidth)
    except (TypeError, ValueError, IndexError) as exc:
        raise CorruptImageError(f"unreadable window centre/width: {exc}") from exc
    function = str(ds.get("VOILUTFunction", "LINEAR") or "LINEAR").strip().upper()
    if function not in ("LINEAR", "LINEAR_EXACT", "SIGMOID"):
        raise UnsupportedImageError(f"unknown VOI LUT function {function}")
    if not (math.isfinite(centre) and math.isfinite(width)):
        logger.warning("ignoring a window that is not finite (%s, %s)", centre, width)
        return None
    if width <= 0 or (function == "LINEAR" and width < 1):
        logger.warning("ignoring invalid window width %s", width)
        return None
    return centre, width, function


def _to_unit_range(x: np.ndarray, ds: Dataset) -> np.ndarray:
    """Apply the VOI LUT (or min-max when there is none), giving float32 in [0, 1], in place."""
    voi_seq = ds.get("VOILUTSequence")
    if voi_seq:
        table, first, bits = _lut_table(voi_seq[0], "VOI", little_endian=_little_endian(ds))
        out = _apply_table(x, table, first)
        out /= float(2**bits - 1)
        return np.clip(out, 0.0, 1.0, out=out)
    window = _window(ds)
    if window is not None:
        centre, width, function = window
        if function == "SIGMOID":
            np.multiply(x, -4.0 / width, out=x)
            x += 4.0 * centre / width
            np.exp(x, out=x)
            x += 1.0
            np.reciprocal(x, out=x)
            return x
        if function == "LINEAR_EXACT":
            scale, offset = 1.0 / width, 0.5 - centre / width
        elif width == 1:  # LINEAR with width 1 is a step at centre - 0.5
            return (x > centre - 0.5).astype(np.float32)
        else:
            scale, offset = 1.0 / (width - 1), 0.5 - (centre - 0.5) / (width - 1)
        x *= np.float32(scale)
        x += np.float32(offset)
        return np.clip(x, 0.0, 1.0, out=x)
    low, high = float(x.min()), float(x.max())
    if high <= low:
        return np.zeros_like(x)
    x -= np.float32(low)
    x *= np.float32(1.0 / (high - low))
    return x


def dataset_to_grey(ds: Dataset, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> GreyImage:
    """Turn a DICOM dataset into a grey image in [0, 1] (pure: no disk, no network).

    Raises:
        NotChestRadiographError: the attributes say it is not a chest radiograph.
        CorruptImageError: no pixel data, zero size, or pixel data that cannot be decoded.
        UnsupportedImageError: multi-frame or colour.
        ImageTooLargeError: Rows x Columns over ``max_pixels`` (checked before decoding).
    """
    check_chest_radiograph(ds)
    rows, cols = _check_geometry(ds, max_pixels)
    try:
        raw = ds.pixel_array
    except _DECODE_ERRORS as exc:
        raise CorruptImageError(f"pixel data cannot be decoded: {exc}") from exc
    if raw.shape != (rows, cols):
        raise CorruptImageError(
            f"decoded pixel data has shape {raw.shape}, expected {(rows, cols)}"
        )
    modality_seq = ds.get("ModalityLUTSequence")
    if modality_seq:
        table, first, _ = _lut_table(modality_seq[0], "Modality", little_endian=_little_endian(ds))
        x = _apply_table(raw, table, first)
    else:
        x = raw.astype(np.float32)
        slope = _number(ds, "RescaleSlope", 1.0) or 1.0
        intercept = _number(ds, "RescaleIntercept", 0.0)
        if slope != 1.0:
            x *= np.float32(slope)
        if intercept != 0.0:
            x += np.float32(intercept)
    grey = _to_unit_range(x, ds)
    if not math.isfinite(float(grey.sum(dtype=np.float64))):
        # Values are in [0, 1] when finite, so the sum is finite unless one is not.
        raise CorruptImageError("the LUTs give values that are not finite numbers")
    photometric = str(ds.PhotometricInterpretation).strip().upper()
    if photometric == "MONOCHROME1":
        np.subtract(np.float32(1.0), grey, out=grey)
    return GreyImage(
        pixels=np.ascontiguousarray(grey, dtype=np.float32),
        source_format="dicom",
        modality=str(ds.get("Modality", "") or "") or None,
        photometric=photometric,
        bits_stored=int(_number(ds, "BitsStored", 0)) or None,
    )


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
    source: str | os.PathLike[str] | bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS
) -> GreyImage:
    """Read a PNG or JPEG as grey: 8- and 16-bit grey kept, grey stored as RGB converted.

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
