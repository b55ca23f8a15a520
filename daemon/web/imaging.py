"""Images for the web interface: stored studies and uploads to PNG, uploads scored in memory.

The browser shows a study as two PNGs stacked: the grey image and the Grad-CAM
coloured with the same colour table the worker burns into its Secondary Capture.
With the heatmap laid over the grey image at CSS ``opacity: alpha`` the browser
computes ``(1 - alpha) * grey + alpha * colour`` per channel, which is exactly
:func:`chestaid.overlay.render_overlay`'s blend, so the picture on screen is the one
sent to the PACS while the reader can still change the opacity.

An upload is recognised by its content, decoded from the bytes received (it is
never written to disk) and refused for the same reasons the worker skips or fails
a received image. Every refusal is a typed error that :func:`http_status` maps to
an HTTP status.
"""

from __future__ import annotations

import hashlib
import io
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset

from chestaid.dicom_outputs import is_chestaid_output
from chestaid.errors import (
    ConfigurationError,
    ImageError,
    ImageTooLargeError,
    UnknownFormatError,
)
from chestaid.imaging import GreyImage, NeededSize, needed_size, read_for_scoring
from chestaid.overlay import colour_map, default_lut, display_image
from daemon.errors import DaemonError
from daemon.serving import ActiveModel

logger = logging.getLogger(__name__)

DISPLAY_MAX_SIDE = 1024  # the longer side of the grey image an upload's analysis keeps


class UploadError(DaemonError):
    """An uploaded file cannot be analysed (beyond the image errors of the ML core)."""


class EmptyUploadError(UploadError):
    """The upload has no bytes."""


class UploadTooLargeError(UploadError):
    """The upload has more bytes than the configured limit."""


# The upload is not a DICOM, PNG or JPEG file, judged by its content: the ML core's
# error, raised as it is so an upload ends as the same file would in the worker.
UnsupportedFormatError = UnknownFormatError


class ChestAidOutputError(UploadError):
    """The upload is one of ChestAid's own outputs (or derived from one), sent back."""


class NotAssessedUploadError(UploadError):
    """The model found the upload not assessable: it gives no score or heatmap for it."""


class ImagePurgedError(DaemonError):
    """A stored study's spooled file is gone: retention has deleted it."""


@dataclass(frozen=True)
class Analysis:
    """An uploaded image scored in memory, with what the page shows of it."""

    filename: str  # as the browser sent it; for display only, never a path
    sha256: str  # hex digest of the uploaded bytes
    source_format: str  # "dicom", "png" or "jpeg"
    pixels: np.ndarray  # grey float32 in [0, 1], shrunk so its longer side <= 1024
    logit: float
    score: float  # calibrated probability
    threshold: float  # governed threshold (nan if none)
    above_threshold: bool
    cam: np.ndarray  # Grad-CAM at feature-map resolution, float32, 0..1
    model_version: str
    calibration_version: int


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def grey_png(pixels: np.ndarray, *, max_side: int = DISPLAY_MAX_SIDE) -> bytes:
    """An 8-bit grey PNG of a 0..1 grey image, shrunk so its longer side is at most ``max_side``.

    Args:
        pixels: float image in [0, 1] (1 = bright), shape (H, W).
        max_side: the longest side of the PNG, in pixels (the image is never enlarged).

    Returns:
        The PNG file's bytes (mode ``L``).

    Raises:
        ConfigurationError: ``pixels`` is not a non-empty 2-D array, or ``max_side`` < 1.
    """
    if pixels.ndim != 2 or pixels.size == 0:
        raise ConfigurationError(f"expected a non-empty 2-D grey image, got shape {pixels.shape}")
    if max_side < 1:
        raise ConfigurationError(f"max_side must be at least 1, got {max_side}")
    shown = display_image(np.nan_to_num(pixels.astype(np.float32, copy=False)), max_side=max_side)
    levels = np.clip(np.round(shown * 255.0), 0, 255).astype(np.uint8)
    return _png(Image.fromarray(levels, mode="L"))


def heatmap_rgb(cam: np.ndarray, *, size: tuple[int, int]) -> np.ndarray:
    """The Grad-CAM upsampled bilinearly to ``size`` and coloured as the worker colours it.

    :func:`chestaid.overlay.colour_map` with the worker's colour table, the steps of
    :func:`chestaid.overlay.render_overlay` before its blend.

    Args:
        cam: map in [0, 1] at feature-map resolution, shape (h, w).
        size: (height, width) of the picture it is laid over.

    Returns:
        RGB uint8 pixels of shape (height, width, 3).

    Raises:
        ConfigurationError: ``cam`` is not a non-empty 2-D array, or ``size`` is not positive.
    """
    if cam.ndim != 2 or cam.size == 0:
        raise ConfigurationError(f"expected a non-empty 2-D map, got shape {cam.shape}")
    height, width = size
    if height < 1 or width < 1:
        raise ConfigurationError(f"size must be positive, got {size}")
    return colour_map(np.nan_to_num(cam), (height, width), lut=default_lut())


def heatmap_png(cam: np.ndarray, *, size: tuple[int, int]) -> bytes:
    """An RGB PNG of the coloured Grad-CAM, to lay over :func:`grey_png` at CSS opacity alpha.

    Args:
        cam: map in [0, 1] at feature-map resolution, shape (h, w).
        size: (height, width) of the grey PNG it is laid over.

    Returns:
        The PNG file's bytes (mode ``RGB``, ``size`` pixels).

    Raises:
        ConfigurationError: as for :func:`heatmap_rgb`.
    """
    return _png(Image.fromarray(heatmap_rgb(cam, size=size), mode="RGB"))


def study_image(path: Path, *, max_pixels: int) -> GreyImage:
    """Read a spooled DICOM file for display, no finer than :data:`DISPLAY_MAX_SIDE` needs.

    A JPEG 2000 or JPEG baseline image is decoded at the lowest resolution whose
    longer side is still at least :data:`DISPLAY_MAX_SIDE`; any other at full size.

    The same reading as the worker's, so the same refusals apply: a study the worker
    skipped (not a frontal chest radiograph, a ChestAid output) is refused here too.

    Args:
        path: the spooled file.
        max_pixels: the pixel budget (checked before the pixels are read).

    Returns:
        The grey image.

    Raises:
        ImagePurgedError: the file is gone (retention deleted it).
        ChestAidOutputError: the file is a ChestAid output sent back.
        CorruptImageError, UnsupportedImageError, NotChestRadiographError,
            ImageTooLargeError: as for :func:`chestaid.imaging.read_for_scoring`.
        OSError: the file exists but cannot be opened (permissions, I/O error).
    """
    try:
        fh = path.open("rb")
    except FileNotFoundError as exc:
        raise ImagePurgedError(f"the spooled file {path.name} has been deleted") from exc
    # Decode inside the open file: the pixel data is deferred and read from it on use.
    with fh:
        read = read_for_scoring(
            fh,
            max_pixels=max_pixels,
            screen=_refuse_chestaid_output,
            need=NeededSize(longer_side=DISPLAY_MAX_SIDE, shorter_side=1),
        )
    return read.image


def _refuse_chestaid_output(ds: Dataset) -> None:
    """Refuse one of ChestAid's own outputs sent back, before its pixels are decoded."""
    if is_chestaid_output(ds):
        raise ChestAidOutputError("one of ChestAid's own outputs, sent back; it is not scored")


def analyse_upload(
    data: bytes,
    *,
    filename: str,
    model: ActiveModel,
    max_pixels: int,
    max_bytes: int,
    max_decoded_bytes: int | None = None,
) -> Analysis:
    """Score an uploaded DICOM, PNG or JPEG file in memory.

    The format is told from the content (a DICOM Part-10 prefix, a bare DICOM dataset,
    or the PNG/JPEG signature), never from ``filename``. Nothing is written to disk.
    A DICOM is refused for the same reasons the worker refuses a received one.

    Args:
        data: the uploaded bytes.
        filename: the name the browser sent, kept for display.
        model: the model in service.
        max_pixels: the pixel budget (checked before the pixels are decoded).
        max_bytes: the largest upload accepted.
        max_decoded_bytes: the most the image's header may declare decoded (pixels x
            channels x bytes per sample), checked before the pixels are decoded.

    Returns:
        The analysis: the display image, the score and the Grad-CAM.

    Raises:
        EmptyUploadError: no bytes.
        UploadTooLargeError: more than ``max_bytes`` bytes.
        UnsupportedFormatError: not a DICOM, PNG or JPEG file.
        ChestAidOutputError: a ChestAid output sent back.
        NotChestRadiographError: a DICOM whose attributes say it is not a frontal
            chest radiograph (modality, body part, lateral view, localizer).
        UnsupportedImageError: colour or multi-frame.
        ImageTooLargeError: more than ``max_pixels`` pixels.
        DecodedSizeError: more than ``max_decoded_bytes`` declared decoded.
        CorruptImageError: truncated or corrupt.
    """
    if not data:
        raise EmptyUploadError("the uploaded file is empty (0 bytes)")
    if len(data) > max_bytes:
        raise UploadTooLargeError(
            f"the upload has {len(data)} bytes; at most {max_bytes} are accepted"
        )
    digest = hashlib.sha256(data).hexdigest()
    # Decoded no finer than the model and the display need, as the worker does.
    need = needed_size(input_size=model.scorer.spec.input_size, picture_side=DISPLAY_MAX_SIDE)
    image = read_for_scoring(
        data,
        max_pixels=max_pixels,
        screen=_refuse_chestaid_output,
        max_decoded_bytes=max_decoded_bytes,
        need=need,
    ).image
    prediction = model.scorer.score_pixels(image.pixels)
    assessment = prediction.assessment
    if not assessment.assessable:
        logger.info("upload not assessable", extra={"sha256": digest, "reason": assessment.reason})
        raise NotAssessedUploadError(
            f"ChestAid did not assess this image ({assessment.reason}): "
            f"{assessment.detail} No score or heatmap is given; it must be read by a radiologist."
        )
    logger.info(
        "upload analysed",
        extra={
            "sha256": digest,
            "source_format": image.source_format,
            "score": round(prediction.score, 6),
        },
    )
    return Analysis(
        filename=filename,
        sha256=digest,
        source_format=image.source_format,
        pixels=display_image(image.pixels, max_side=DISPLAY_MAX_SIDE),
        logit=prediction.logit,
        score=prediction.score,
        threshold=prediction.threshold,
        above_threshold=prediction.above_threshold,
        # The map of the image as scored, turned back onto the image as uploaded.
        cam=prediction.cam,  # on the upload as received, turned or not
        model_version=prediction.model_version,
        calibration_version=model.calibration_version,
    )


# Most specific first: ImageTooLargeError and UnsupportedFormatError before the
# broader classes that would also match them.
_STATUSES: tuple[tuple[type[Exception], int], ...] = (
    (UploadTooLargeError, 413),
    (ImageTooLargeError, 413),
    (UnsupportedFormatError, 415),
    (ImagePurgedError, 410),
    (EmptyUploadError, 422),
    (ChestAidOutputError, 422),
    (UploadError, 422),
    # Corrupt, not a chest radiograph, colour, multi-frame: readable as a format but
    # not something ChestAid scores.
    (ImageError, 422),
)


def http_status(exc: Exception) -> int:
    """The HTTP status of an error raised by this module's functions.

    413 too large (bytes or pixels), 415 not a DICOM/PNG/JPEG file, 410 the study's
    file was purged, 422 empty, corrupt, not a chest radiograph, colour or multi-frame,
    a ChestAid output, or an image the model found not assessable; 500 for anything else
    (not the client's fault).
    """
    for kind, status in _STATUSES:
        if isinstance(exc, kind):
            return status
    return 500
