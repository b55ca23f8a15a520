"""A DICOM dataset to a grey image in [0, 1], and the check that it is a chest radiograph.

The display pipeline of PS3.3 C.11 is applied in order: the Modality LUT (Rescale
Slope/Intercept or the Modality LUT Sequence), the VOI LUT (the first window, with
its VOI LUT Function, or the VOI LUT Sequence's first LUT), then MONOCHROME1 is
inverted, so 1 is always bright as displayed. Bits Stored and Pixel Representation
are honoured by the decoder. The LUT arithmetic is done here in float32 (the images
are large and this runs for every study). The pixel budget is checked from Rows and
Columns before any pixel is decoded.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.uid import (
    DigitalIntraOralXRayImageStorageForProcessing,
    DigitalMammographyXRayImageStorageForProcessing,
    DigitalXRayImageStorageForProcessing,
    SecondaryCaptureImageStorage,
)

from chestaid.errors import (
    CorruptImageError,
    ImageTooLargeError,
    NotChestRadiographError,
    UnsupportedImageError,
)
from chestaid.imaging import uids
from chestaid.imaging.dicom_file import DECODE_ERRORS, is_decoder_panic
from chestaid.imaging.grey_image import DEFAULT_MAX_PIXELS, GreyImage, check_decoded_size
from chestaid.imaging.reduced import NeededSize, decode_reduced

logger = logging.getLogger(__name__)

CHEST_MODALITIES = frozenset({"CR", "DX", "DR"})
SC_MODALITIES = frozenset({"SC", "OT"})  # what Secondary Capture images carry
CHEST_BODY_PARTS = frozenset({"CHEST", "THORAX", "LUNG", "LUNGS", "CHEST_TO_PELVIS", "TORSO"})
# View Position values of a frontal projection; laterals (LL, RL), decubitus and obliques
# are not what the model was trained on. "AP"/"PA" are the defined terms; the others are
# what some vendors write.
FRONTAL_VIEWS = frozenset({"PA", "AP", "APS", "PAS", "FRONTAL", "AP_SUPINE", "AP_ERECT"})
# Image Type values that mark an image as not a diagnostic projection.
NON_DIAGNOSTIC_IMAGE_TYPES = frozenset({"LOCALIZER", "SCOUT"})
CHEST_SOP_CLASSES = frozenset(uids.ACCEPTED_SOP_CLASSES)
# Images "For Processing" are raw detector data, before the vendor's processing that
# makes an image to look at: the model, trained on images For Presentation, scores
# them as something else entirely (0.9999 against 0.0002 for the same exposure).
FOR_PROCESSING_SOP_CLASSES = frozenset(
    {
        DigitalXRayImageStorageForProcessing,
        DigitalMammographyXRayImageStorageForProcessing,
        DigitalIntraOralXRayImageStorageForProcessing,
    }
)
_REPORT_SOP_CLASSES = frozenset(uids.REPORT_SOP_CLASSES)
GREY_PHOTOMETRICS = frozenset({"MONOCHROME1", "MONOCHROME2"})


def check_chest_radiograph(ds: Dataset) -> None:
    """Refuse a dataset whose attributes say it is not a frontal chest radiograph.

    Absent attributes are not held against the image: only what is stated counts.

    Raises:
        NotChestRadiographError: a structured report; an image For Processing (its SOP
            class or Presentation Intent Type); another modality, SOP class or body part,
            a view position that is not frontal, or an image type marked localizer/scout.
    """
    modality = str(ds.get("Modality", "") or "").strip().upper()
    sop_class = str(ds.get("SOPClassUID", "") or "")
    if sop_class in _REPORT_SOP_CLASSES:
        # Received with the study a PACS forwards; whatever its Modality says.
        raise NotChestRadiographError("a structured report, not an image")
    intent = str(ds.get("PresentationIntentType", "") or "").strip().upper()
    if sop_class in FOR_PROCESSING_SOP_CLASSES or intent == "FOR PROCESSING":
        raise NotChestRadiographError(
            "an image For Processing (SOP class or Presentation Intent Type):"
            " only images For Presentation are scored"
        )
    is_sc = sop_class == SecondaryCaptureImageStorage
    if modality and modality not in CHEST_MODALITIES and not (is_sc and modality in SC_MODALITIES):
        raise NotChestRadiographError(
            "Modality is not one of the radiographs ChestAid scores (CR, DX, DR, or SC)"
        )
    if sop_class and sop_class not in CHEST_SOP_CLASSES and modality not in CHEST_MODALITIES:
        raise NotChestRadiographError(
            "SOP Class UID is not a CR, DX or Secondary Capture image storage class"
        )
    body_part = str(ds.get("BodyPartExamined", "") or "").strip().upper()
    if body_part and body_part not in CHEST_BODY_PARTS:
        raise NotChestRadiographError("Body Part Examined is not the chest")
    view = str(ds.get("ViewPosition", "") or "").strip().upper()
    if view and view not in FRONTAL_VIEWS:
        raise NotChestRadiographError("View Position is not a frontal (PA/AP) view")
    image_type = {str(v).strip().upper() for v in _values(ds.get("ImageType"))}
    marked = sorted(image_type & NON_DIAGNOSTIC_IMAGE_TYPES)
    if marked:
        raise NotChestRadiographError("Image Type marks a localizer or scout, not a radiograph")


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
    except DECODE_ERRORS as exc:
        raise CorruptImageError(f"{keyword} cannot be read ({type(exc).__name__})") from exc
    if value is None or value == "":
        return default
    try:
        number = _first(value)
    except (TypeError, ValueError, IndexError) as exc:
        raise CorruptImageError(f"{keyword} is not a number") from exc
    if not math.isfinite(number):
        raise CorruptImageError(f"{keyword} is not a finite number")
    return number


def _check_geometry(ds: Dataset, max_pixels: int, max_decoded_bytes: int | None) -> tuple[int, int]:
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
    check_decoded_size(
        rows=rows,
        columns=cols,
        samples=int(_number(ds, "SamplesPerPixel", 1)),
        bits=int(_number(ds, "BitsAllocated", 16)),
        frames=frames,
        max_decoded_bytes=max_decoded_bytes,
    )
    if frames > 1:
        raise UnsupportedImageError(f"multi-frame image ({frames} frames); one frame is expected")
    samples = int(_number(ds, "SamplesPerPixel", 1))
    photometric = str(ds.get("PhotometricInterpretation", "") or "").strip().upper()
    if samples != 1 or photometric not in GREY_PHOTOMETRICS:
        raise UnsupportedImageError(
            "colour image (Photometric Interpretation or Samples per Pixel is not grey);"
            " a grey radiograph is expected"
        )
    return rows, cols


def _lut_table(item: Dataset, which: str, *, little_endian: bool) -> tuple[np.ndarray, int, int]:
    """A LUT item's data as float32, its first mapped input value and output bits."""
    try:
        entries, first, bits = (int(v) for v in item.LUTDescriptor)
        raw = item.LUTData
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise CorruptImageError(
            f"{which} LUT lacks a usable descriptor or data ({type(exc).__name__})"
        ) from exc
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
        raise CorruptImageError("Window Center or Window Width is not a number") from exc
    function = str(ds.get("VOILUTFunction", "LINEAR") or "LINEAR").strip().upper()
    if function not in ("LINEAR", "LINEAR_EXACT", "SIGMOID"):
        raise UnsupportedImageError("VOI LUT Function is not LINEAR, LINEAR_EXACT or SIGMOID")
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


def dataset_to_grey(
    ds: Dataset,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_decoded_bytes: int | None = None,
    need: NeededSize | None = None,
) -> GreyImage:
    """Turn a DICOM dataset into a grey image in [0, 1] (pure: no disk, no network).

    Args:
        ds: the dataset.
        max_pixels: the pixel budget, checked from Rows and Columns before decoding.
        max_decoded_bytes: the budget of decoded bytes, checked likewise; None for none.
        need: the least resolution the image's consumers need; when given, an image
            whose codec can decode a lower resolution directly (JPEG 2000, 8-bit JPEG
            baseline) and that has a VOI (a window or a VOI LUT) is decoded at the
            lowest resolution that still has it (see :mod:`chestaid.imaging.reduced`).
            None decodes at full size.

    Raises:
        NotChestRadiographError: the attributes say it is not a chest radiograph.
        CorruptImageError: no pixel data, zero size, or pixel data that cannot be decoded.
        UnsupportedImageError: multi-frame or colour.
        ImageTooLargeError: Rows x Columns over ``max_pixels`` (checked before decoding).
        DecodedSizeError: Rows x Columns x Samples per Pixel x Bits Allocated (in whole
            bytes) x frames over ``max_decoded_bytes`` (checked before decoding).
    """
    check_chest_radiograph(ds)
    rows, cols = _check_geometry(ds, max_pixels, max_decoded_bytes)
    # Without a VOI the grey range is the image's own minimum to maximum, which a
    # reduced (low-passed) decode narrows: such an image is decoded at full size.
    if need is not None and (ds.get("VOILUTSequence") or _window(ds) is not None):
        reduced = decode_reduced(ds, rows=rows, columns=cols, need=need)
    else:
        reduced = None
    raw, level = reduced if reduced is not None else (_decode_full(ds, rows, cols), 0)
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
        reduction=level,
        stored_shape=(rows, cols) if level else None,
    )


def _decode_full(ds: Dataset, rows: int, cols: int) -> np.ndarray:
    """The stored values at full size, by pydicom and its decoder plugins.

    Raises:
        CorruptImageError: the pixel data cannot be decoded, or not to Rows x Columns.
    """
    try:
        raw: np.ndarray = ds.pixel_array
    except DECODE_ERRORS as exc:
        raise CorruptImageError(f"pixel data cannot be decoded: {exc}") from exc
    except BaseException as exc:
        if not is_decoder_panic(exc):
            raise
        raise CorruptImageError(
            f"pixel data cannot be decoded: the decoder failed ({exc})"
        ) from exc
    if raw.shape != (rows, cols):
        raise CorruptImageError(
            f"decoded pixel data has shape {raw.shape}, expected {(rows, cols)}"
        )
    return raw
