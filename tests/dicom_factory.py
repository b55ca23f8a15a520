"""Synthetic DICOM chest radiographs for tests, in every variant ChestAid reads.

``make_dx`` builds a Part-10 dataset (and writes it when given a path) with chosen
modality, photometric interpretation, bit depth, signedness, Modality LUT (rescale or
sequence), VOI LUT (windows with their function, or a sequence) and transfer syntax.
``expected_grey`` computes the model-input image a dataset should give, independently
of ChestAid's own code: with pydicom's float64 LUT functions, scaled to [0, 1] the
way the standard defines the output range, inverted for MONOCHROME1.

JPEG baseline and JPEG lossless are encoded with DCMTK's ``dcmcjpeg`` (pydicom has no
encoder for them); ``require_tool`` skips a test naming the Debian package when the
tool is missing, and fails it under ``CI=true``.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.pixels import apply_modality_lut, apply_voi_lut
from pydicom.uid import (
    JPEG2000,
    UID,
    ComputedRadiographyImageStorage,
    DeflatedExplicitVRLittleEndian,
    DigitalXRayImageStorageForPresentation,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    RLELossless,
    SecondaryCaptureImageStorage,
    generate_uid,
)

SOP_CLASSES = {
    "CR": ComputedRadiographyImageStorage,
    "DX": DigitalXRayImageStorageForPresentation,
    "DR": DigitalXRayImageStorageForPresentation,
    "OT": SecondaryCaptureImageStorage,
}
NATIVE = (
    ImplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    DeflatedExplicitVRLittleEndian,
)
PYDICOM_ENCODED = (RLELossless, JPEGLSLossless, JPEG2000Lossless, JPEG2000)
DCMTK_ENCODED = {JPEGBaseline8Bit: "+eb", JPEGLosslessSV1: "+e1", JPEGLossless: "+el"}
LOSSY = (JPEGBaseline8Bit, JPEG2000)


def require_tool(tool: str, package: str) -> str:
    """The path of ``tool``; skips naming the Debian package when absent (fails under CI)."""
    path = shutil.which(tool)
    if path is None:
        message = f"{tool} not found: install the Debian package '{package}'"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


def chest_pixels(rows: int, cols: int, *, low: int, high: int, seed: int = 0) -> np.ndarray:
    """A chest-like image (bright mediastinum, two dark lung fields) spanning [low, high]."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:rows, 0:cols]
    y, x = yy / rows, xx / cols
    image = 0.7 - 0.25 * y + 0.05 * rng.standard_normal((rows, cols))
    for cx in (0.3, 0.7):
        image[((x - cx) / 0.17) ** 2 + ((y - 0.5) / 0.32) ** 2 < 1] -= 0.35
    image = (image - image.min()) / (image.max() - image.min())
    return np.round(low + image * (high - low)).astype(np.int64)


def make_dx(
    path: str | os.PathLike[str] | None = None,
    *,
    rows: int = 64,
    cols: int = 80,
    bits_stored: int = 12,
    bits_allocated: int | None = None,
    signed: bool = False,
    photometric: str = "MONOCHROME2",
    modality: str = "DX",
    sop_class: str | None = None,
    transfer_syntax: str = ExplicitVRLittleEndian,
    rescale: tuple[float, float] | None = None,
    modality_lut: bool = False,
    window: Sequence[tuple[float, float]] | tuple[float, float] | None = None,
    voi_function: str | None = None,
    voi_lut: bool = False,
    body_part: str | None = "CHEST",
    view_position: str | None = "PA",
    pixels: np.ndarray | None = None,
    seed: int = 0,
    **extra: Any,
) -> Dataset:
    """Build (and write, when ``path`` is given) a synthetic radiograph dataset.

    Args:
        window: one (centre, width) or several; several become multi-valued attributes.
        voi_function: VOILUTFunction (LINEAR, LINEAR_EXACT, SIGMOID) when set.
        modality_lut: add a Modality LUT Sequence (a gentle curve) instead of rescaling.
        voi_lut: add a VOI LUT Sequence mapping the stored range onto 8 bits.
        pixels: stored values to use instead of the generated image.
        extra: further attributes set by keyword.

    Returns:
        The dataset, pixel data encoded in ``transfer_syntax``.
    """
    allocated = bits_allocated or (8 if bits_stored <= 8 else 16)
    if pixels is None:
        low, high = (
            (-(2 ** (bits_stored - 1)), 2 ** (bits_stored - 1) - 1)
            if signed
            else (0, 2**bits_stored - 1)
        )
        pixels = chest_pixels(
            rows, cols, low=low + (high - low) // 20, high=high - (high - low) // 20, seed=seed
        )
    dtype = {
        (8, False): np.uint8,
        (8, True): np.int8,
        (16, False): np.uint16,
        (16, True): np.int16,
    }[(allocated, signed)]
    stored = np.asarray(pixels).astype(dtype)

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.SOPClassUID = UID(
        sop_class or SOP_CLASSES.get(modality, DigitalXRayImageStorageForPresentation)
    )
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.PatientName, ds.PatientID = "Test^Synthetic", "SYN0001"
    ds.PatientBirthDate, ds.PatientSex = "19700101", "O"
    ds.StudyDate, ds.StudyTime, ds.AccessionNumber = "20260101", "120000", "ACC0001"
    ds.StudyID, ds.SeriesNumber, ds.InstanceNumber = "1", 1, 1
    ds.ReferringPhysicianName = ""
    ds.Modality = modality
    if body_part is not None:
        ds.BodyPartExamined = body_part
    if view_position is not None:
        ds.ViewPosition = view_position
    ds.Rows, ds.Columns = rows, cols
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = allocated, bits_stored, bits_stored - 1
    ds.PixelRepresentation = int(signed)
    if rescale is not None:
        ds.RescaleSlope, ds.RescaleIntercept = rescale
        ds.RescaleType = "US"
    if modality_lut:
        first = int(stored.min())
        entries = int(stored.max()) - first + 1
        curve = np.round(np.sqrt(np.linspace(0, 1, entries)) * 4095).astype(np.uint16)
        item = Dataset()
        item.LUTDescriptor = [entries, first, 16]  # 8 or 16 (PS3.3 C.11.1.1.1)
        item.ModalityLUTType = "US"
        item.LUTData = curve.tolist()
        ds.ModalityLUTSequence = [item]
    if window is not None:
        windows = [window] if isinstance(window[0], int | float) else list(window)  # type: ignore[list-item]
        centres = [float(c) for c, _ in windows]  # type: ignore[misc]
        widths = [float(w) for _, w in windows]  # type: ignore[misc]
        ds.WindowCenter = centres if len(centres) > 1 else centres[0]
        ds.WindowWidth = widths if len(widths) > 1 else widths[0]
    if voi_function is not None:
        ds.VOILUTFunction = voi_function
    if voi_lut:
        item = Dataset()
        lo = int(stored.min())
        entries = int(stored.max()) - lo + 1
        item.LUTDescriptor = [entries, lo, 16]
        item.LUTData = (
            np.round(np.linspace(0, 1, entries) ** 0.7 * 65535).astype(np.uint16).tolist()
        )
        ds.VOILUTSequence = [item]
    for key, value in extra.items():
        setattr(ds, key, value)
    ds.PixelData = stored.tobytes()
    if transfer_syntax in NATIVE:
        ds.file_meta.TransferSyntaxUID = transfer_syntax
        if transfer_syntax == ExplicitVRBigEndian and allocated == 16:
            # pydicom writes Pixel Data bytes as given: swap them for big endian.
            ds.PixelData = stored.byteswap().tobytes()
    elif transfer_syntax in PYDICOM_ENCODED:
        kwargs: dict[str, Any] = {}
        if transfer_syntax == JPEG2000:
            kwargs = {"j2k_psnr": [80.0]}
        ds.compress(transfer_syntax, stored, **kwargs)
    elif transfer_syntax in DCMTK_ENCODED:
        ds = _dcmtk_compress(ds, DCMTK_ENCODED[transfer_syntax])
    else:
        raise ValueError(f"no way to encode {transfer_syntax}")
    if path is not None:
        ds.save_as(path, enforce_file_format=True)
    return ds


def _dcmtk_compress(ds: Dataset, option: str) -> Dataset:
    tool = require_tool("dcmcjpeg", "dcmtk")
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "in.dcm", Path(tmp) / "out.dcm"
        ds.save_as(src, enforce_file_format=True)
        subprocess.run(
            [tool, option, str(src), str(dst)], check=True, capture_output=True, timeout=60
        )
        return pydicom.dcmread(dst)


def unit_range(ds: Dataset, values: np.ndarray) -> np.ndarray:
    """Scale pydicom's VOI output to [0, 1] the way PS3.3 defines the output range."""
    if ds.get("VOILUTSequence"):
        return values / float(2 ** int(ds.VOILUTSequence[0].LUTDescriptor[2]) - 1)
    if "WindowCenter" in ds:
        if ds.get("ModalityLUTSequence"):
            y_min, y_max = 0.0, float(2 ** int(ds.ModalityLUTSequence[0].LUTDescriptor[2]) - 1)
        elif ds.PixelRepresentation == 0:
            y_min, y_max = 0.0, float(2**ds.BitsStored - 1)
        else:
            y_min, y_max = float(-(2 ** (ds.BitsStored - 1))), float(2 ** (ds.BitsStored - 1) - 1)
        if "RescaleSlope" in ds and "RescaleIntercept" in ds:
            y_min = y_min * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
            y_max = y_max * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        return (values - y_min) / (y_max - y_min)
    low, high = float(values.min()), float(values.max())
    return np.zeros_like(values) if high <= low else (values - low) / (high - low)


def expected_grey(ds: Dataset) -> np.ndarray:
    """The [0, 1] image ChestAid should produce, computed with pydicom in float64."""
    arr = ds.pixel_array
    values = apply_modality_lut(arr, ds)
    if not np.issubdtype(values.dtype, np.integer) and np.array_equal(values, np.round(values)):
        values = values.astype(np.int64)  # a VOI LUT is indexed by integers
    values = np.asarray(apply_voi_lut(values, ds, index=0, prefer_lut=True), dtype=np.float64)
    grey = np.clip(unit_range(ds, values), 0.0, 1.0)
    if ds.PhotometricInterpretation == "MONOCHROME1":
        grey = 1.0 - grey
    return grey


def chestaid_output_bytes() -> bytes:
    """A Part-10 Secondary Capture as ChestAid itself writes one (to be sent back to it)."""
    from chestaid.dicom_outputs import OutputIdentity, TriageFinding, secondary_capture

    rng = np.random.default_rng(9)
    finding = TriageFinding(
        score=0.9,
        threshold=0.5,
        above_threshold=True,
        priority="URGENT",
        model_version="test-1",
        calibration_version=1,
    )
    identity = OutputIdentity(
        series_instance_uid="1.2.3.9", sop_instance_uid="1.2.3.9.1", series_number=9901
    )
    sc = secondary_capture(
        make_dx(rows=96, cols=80), rng.random((96, 80)), rng.random((3, 3)), finding, identity
    )
    buffer = io.BytesIO()
    sc.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()
