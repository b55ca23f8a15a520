"""The Secondary Capture of a scored image: the Grad-CAM overlay above a burned-in text band."""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from highdicom import ContributingEquipment, PatientOrientationValuesBiped
from highdicom.sc import SCImage
from highdicom.sr import CodedConcept
from PIL import Image, ImageDraw, ImageFont
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian

from chestaid import __version__
from chestaid.dicom_outputs.common import (
    DISCLAIMER,
    MANUFACTURER,
    MODEL_NAME,
    REFUSALS,
    SC_SERIES_DESCRIPTION,
    SCORED_CONTRIBUTION,
    SOURCE_IMAGE_PURPOSE,
    OutputIdentity,
    TriageFinding,
    check_finding,
    contributing_equipment,
    source_header,
    turned_upright_text,
)
from chestaid.display import class_probabilities_text, score_pair_text
from chestaid.errors import ConfigurationError, OutputError
from chestaid.overlay import default_lut, display_image, render_overlay

logger = logging.getLogger(__name__)

MIN_SIDE = 64  # the smallest max_side accepted: a smaller picture is of no use to a reader
_MARGIN = 8  # pixels around the text in the band
_TEXT_COLOUR = (255, 255, 255)
BAND_COLOUR = (0, 0, 0)
_BIPED = frozenset(v.value for v in PatientOrientationValuesBiped)


@dataclass(frozen=True)
class TriageImage:
    """The Secondary Capture's pixels: the overlaid image with a text band below it."""

    pixels: np.ndarray  # RGB uint8, shape (image_rows + band_rows, columns, 3)
    image_rows: int  # rows of the (downsampled, overlaid) radiograph, at the top
    band_rows: int  # rows of the text band, at the bottom


def triage_text(finding: TriageFinding) -> list[str]:
    """The lines burned into the Secondary Capture.

    Args:
        finding: the score and its context.

    Returns:
        Priority band; score, threshold and which side of it; for an N-class model,
        each class's calibrated probability (the score is then that of any class but
        the normal one); model and calibration versions; and the statement that this
        is triage support, not a diagnosis.

    Raises:
        OutputError: the finding is not reportable (see :func:`check_finding`).
    """
    check_finding(finding)
    side = "ABOVE" if finding.above_threshold else "below"
    score, threshold = score_pair_text(finding.score, finding.threshold)
    lines = [
        f"ChestAid pneumonia triage: {finding.priority}",
        f"Score {score} (calibrated)  threshold {threshold}  {side} threshold",
    ]
    if finding.class_probabilities:
        lines.append(
            f"Class probabilities: {class_probabilities_text(finding.class_probabilities)}"
        )
    return [
        *lines,
        f"Model {finding.model_version}  calibration v{finding.calibration_version}",
        f"{DISCLAIMER}.",
    ]


def triage_image(
    grey: np.ndarray,
    cam: np.ndarray,
    finding: TriageFinding,
    *,
    max_side: int = 1024,
    alpha: float = 0.35,
    lut: np.ndarray | None = None,
) -> TriageImage:
    """Compose the Secondary Capture's pixels (pure: no disk, no clock).

    The grey image is shrunk (area-averaged) so its longer side is at most
    ``max_side``, keeping its aspect ratio, before the map is blended on it; a black
    band with the triage text, as wide as the image, is added below it so the anatomy
    stays clear. Lines too long for the width are wrapped.

    Args:
        grey: float image in [0, 1] (1 = bright as displayed), shape (H, W), full size.
        cam: Grad-CAM in [0, 1] at feature-map resolution, shape (h, w), over the
            image as given (a map of the image turned upright is turned back first).
        finding: what the text band states.
        max_side: the longest side of the image, in pixels (the band adds rows below).
        alpha: opacity of the map over the image.
        lut: a (256, 3) uint8 colour table from :func:`chestaid.overlay.colormap_lut`.

    Returns:
        The RGB pixels and where the image and the band are.

    Raises:
        OutputError: ``grey`` or ``cam`` is not a non-empty 2-D array, or the finding
            is not reportable.
        ConfigurationError: ``max_side`` below :data:`MIN_SIDE` or ``alpha`` outside [0, 1].
    """
    turned = turned_upright_text(finding.quarter_turns)
    lines = [*triage_text(finding), *([turned] if turned else [])]
    check_picture_inputs(max_side, grey=grey, cam=cam)
    shown = display_image(grey, max_side=max_side)
    overlay = render_overlay(
        shown,
        np.nan_to_num(cam.astype(np.float32, copy=False)),
        alpha=alpha,
        lut=lut if lut is not None else default_lut(),
    )
    return with_band(overlay, lines, BAND_COLOUR)


def check_picture_inputs(max_side: int, **arrays: np.ndarray) -> None:
    """Refuse what a picture cannot be made of.

    Raises:
        OutputError: an array that is not a non-empty 2-D array (named by its keyword).
        ConfigurationError: ``max_side`` below :data:`MIN_SIDE`.
    """
    for name, array in arrays.items():
        if array.ndim != 2 or array.size == 0:
            raise OutputError(f"{name} must be a non-empty 2-D array, got shape {array.shape}")
    if max_side < MIN_SIDE:
        raise ConfigurationError(f"max_side must be at least {MIN_SIDE}, got {max_side}")


def with_band(
    picture: np.ndarray, lines: Sequence[str], background: tuple[int, int, int]
) -> TriageImage:
    """An RGB picture with a band of wrapped text lines added below it."""
    columns = picture.shape[1]
    font = _font(_font_size(columns))
    wrapped = _wrap(lines, font, columns - 2 * _MARGIN)
    band_rows = _band_rows(len(wrapped), font)
    pixels = np.zeros((picture.shape[0] + band_rows, columns, 3), dtype=np.uint8)
    pixels[: picture.shape[0]] = picture
    pixels[picture.shape[0] :] = _draw_band(wrapped, font, columns, band_rows, background)
    return TriageImage(pixels=pixels, image_rows=picture.shape[0], band_rows=band_rows)


def secondary_capture(
    source: Dataset,
    grey: np.ndarray,
    cam: np.ndarray,
    finding: TriageFinding,
    identity: OutputIdentity,
    *,
    max_side: int = 1024,
    alpha: float = 0.35,
    lut: np.ndarray | None = None,
) -> Dataset:
    """Build the overlay Secondary Capture for the source's study, in a new series.

    Args:
        source: the received dataset; only its header is used (pixel data may be deferred).
        grey: the source decoded to float [0, 1], 2-D, full size (as ``read_image`` gives).
        cam: the Grad-CAM, float [0, 1], at feature-map resolution.
        finding: the score and its context, stated in the burned-in text.
        identity: Series and SOP Instance UIDs and numbers of the new object.
        max_side: the longest side of the image (the text band adds rows below it).
        alpha: opacity of the map over the image.
        lut: an optional precomputed colour table (see :func:`triage_image`).

    Returns:
        An RGB Secondary Capture Image (Burned In Annotation YES, Image Type
        DERIVED\\SECONDARY), Explicit VR Little Endian, ready for ``save_as``.

    Raises:
        OutputError: the source lacks its Study, Series or SOP Instance UID or SOP
            Class UID, an input is unusable, or highdicom refuses a value.
        ConfigurationError: ``max_side`` or ``alpha`` out of range.
    """
    header = source_header(source)
    image = triage_image(grey, cam, finding, max_side=max_side, alpha=alpha, lut=lut)
    derivation = (
        "Source image downsampled, Grad-CAM overlay blended and triage text burned in "
        f"by ChestAid. {DISCLAIMER}."
    )
    if finding.quarter_turns:
        derivation += (
            f" Scored after turning upright by {finding.quarter_turns} x 90 degrees; the "
            "Grad-CAM map is shown turned back onto the image as received."
        )
    return secondary_capture_of(
        source,
        header,
        image,
        identity,
        equipment=contributing_equipment(
            finding.model_version, finding.calibration_version, SCORED_CONTRIBUTION
        ),
        series_description=SC_SERIES_DESCRIPTION,
        derivation=derivation,
    )


def secondary_capture_of(
    source: Dataset,
    header: Dataset,
    image: TriageImage,
    identity: OutputIdentity,
    *,
    equipment: ContributingEquipment,
    series_description: str,
    derivation: str,
) -> Dataset:
    """The Secondary Capture dataset of composed pixels, in the source's study."""
    orientation = _patient_orientation(header)
    # highdicom needs an orientation of single letters for a patient image; any other
    # value (letter pairs such as "FL", or none) is set from the source just below.
    accepted = orientation is not None and all(v in _BIPED for v in orientation)
    try:
        sc = SCImage.from_ref_dataset(
            ref_dataset=header,
            pixel_array=image.pixels,
            photometric_interpretation="RGB",
            bits_allocated=8,
            coordinate_system="PATIENT",
            series_instance_uid=identity.series_instance_uid,
            series_number=identity.series_number,
            sop_instance_uid=identity.sop_instance_uid,
            instance_number=identity.instance_number,
            manufacturer=MANUFACTURER,
            patient_orientation=orientation if accepted else ("L", "F"),
            transfer_syntax_uid=ExplicitVRLittleEndian,
            contributing_equipment=[equipment],
            series_description=series_description,
            manufacturer_model_name=MODEL_NAME,
            software_versions=__version__,
        )
        sc.copy_patient_and_study_information(header)
    except REFUSALS as exc:
        raise OutputError(f"highdicom refused the Secondary Capture: {exc}") from exc
    if not accepted:
        sc.PatientOrientation = list(orientation) if orientation is not None else []
    # ChestAid scores chest radiographs only; CHEST is the defined term (and an unpaired
    # part, so Laterality stays absent).
    sc.BodyPartExamined = "CHEST"
    sc.BurnedInAnnotation = "YES"
    sc.SecondaryCaptureDeviceManufacturer = MANUFACTURER
    sc.SecondaryCaptureDeviceManufacturerModelName = MODEL_NAME
    sc.SecondaryCaptureDeviceSoftwareVersions = __version__
    sc.DerivationDescription = derivation
    sc.SourceImageSequence = [_source_reference(header)]
    sc.ReferencedSeriesSequence = [_series_reference(header)]
    if str(source.get("LossyImageCompression", "")) == "01":
        # Once lossy, always flagged: the derived image inherits the source's history.
        sc.LossyImageCompression = "01"
        for keyword in ("LossyImageCompressionRatio", "LossyImageCompressionMethod"):
            if keyword in source:
                setattr(sc, keyword, copy.deepcopy(source[keyword].value))
    logger.debug(
        "secondary capture built",
        extra={"sop_instance_uid": identity.sop_instance_uid, "shape": image.pixels.shape},
    )
    return sc


def _source_reference(header: Dataset) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = header.SOPClassUID
    item.ReferencedSOPInstanceUID = header.SOPInstanceUID
    item.PurposeOfReferenceCodeSequence = [CodedConcept.from_code(SOURCE_IMAGE_PURPOSE)]
    return item


def _series_reference(header: Dataset) -> Dataset:
    instance = Dataset()
    instance.ReferencedSOPClassUID = header.SOPClassUID
    instance.ReferencedSOPInstanceUID = header.SOPInstanceUID
    series = Dataset()
    series.SeriesInstanceUID = header.SeriesInstanceUID
    series.ReferencedInstanceSequence = [instance]
    return series


def _patient_orientation(header: Dataset) -> tuple[str, str] | None:
    value = header.get("PatientOrientation")
    if value is None or value == "":
        return None
    values = [value] if isinstance(value, str) else list(value)
    cleaned = [str(v).strip().upper() for v in values]
    if len(cleaned) != 2 or not all(cleaned):
        return None
    return cleaned[0], cleaned[1]


def _font_size(columns: int) -> int:
    return int(min(40, max(10, round(columns / 42))))


@lru_cache(maxsize=16)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def _line_height(font: ImageFont.FreeTypeFont | ImageFont.ImageFont) -> int:
    return int(font.getbbox("Ay")[3]) + max(2, int(font.getbbox("Ay")[3]) // 4)


def _band_rows(lines: int, font: ImageFont.FreeTypeFont | ImageFont.ImageFont) -> int:
    return lines * _line_height(font) + 2 * _MARGIN


def _wrap(
    lines: Sequence[str], font: ImageFont.FreeTypeFont | ImageFont.ImageFont, room: int
) -> list[str]:
    """Break lines at spaces so each fits in ``room`` pixels (a lone long word may not)."""
    wrapped: list[str] = []
    for line in lines:
        if font.getlength(line) <= room:
            wrapped.append(line)
            continue
        current = ""
        for word in line.split():
            candidate = f"{current} {word}" if current else word
            if current and font.getlength(candidate) > room:
                wrapped.append(current)
                current = word
            else:
                current = candidate
        if current:
            wrapped.append(current)
    return wrapped


def _draw_band(
    lines: Sequence[str],
    font: ImageFont.FreeTypeFont | ImageFont.ImageFont,
    columns: int,
    rows: int,
    background: tuple[int, int, int] = BAND_COLOUR,
) -> np.ndarray:
    band = Image.new("RGB", (columns, rows), background)
    draw = ImageDraw.Draw(band)
    step = _line_height(font)
    for i, line in enumerate(lines):
        draw.text((_MARGIN, _MARGIN + i * step), line, font=font, fill=_TEXT_COLOUR)
    return np.asarray(band, dtype=np.uint8)
