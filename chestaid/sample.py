"""A synthetic DX chest radiograph as a DICOM file, for trying ChestAid end to end.

The image is made up (two dark lung fields, a bright mediastinum, noise): it has no
diagnosis and its score means nothing clinically. It exists so that a fresh install
can exercise the whole path (read, preprocess, score, Grad-CAM, DICOM outputs)
without any patient data. The patient attributes say plainly that it is synthetic.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    UID,
    DigitalXRayImageStorageForPresentation,
    ExplicitVRLittleEndian,
    generate_uid,
)

import chestaid
from chestaid.errors import ConfigurationError

SAMPLE_PATIENT_NAME = "SYNTHETIC^CHESTAID"
SAMPLE_PATIENT_ID = "CHESTAID-SAMPLE"


def synthetic_chest(rows: int, cols: int, *, bits_stored: int = 12, seed: int = 0) -> np.ndarray:
    """A chest-like uint16 image spanning most of ``bits_stored`` bits (bright = dense)."""
    rng = np.random.default_rng(seed)
    y = np.linspace(0.0, 1.0, rows, dtype=np.float32)[:, None]
    x = np.linspace(0.0, 1.0, cols, dtype=np.float32)[None, :]
    image = np.broadcast_to(0.75 - 0.2 * y, (rows, cols))
    for centre in (0.3, 0.7):
        lung = ((x - centre) / 0.17) ** 2 + ((y - 0.5) / 0.33) ** 2
        image = image - 0.4 * np.exp(-(lung**4))
    image = image + 0.03 * rng.standard_normal((rows, cols)).astype(np.float32)
    image = (image - image.min()) / (image.max() - image.min())
    top = 2**bits_stored - 1
    stored: np.ndarray = np.round(top * (0.05 + 0.9 * image)).astype(np.uint16)
    return stored


def synthetic_dx(
    path: str | os.PathLike[str] | None = None,
    *,
    rows: int = 2500,
    cols: int = 2048,
    bits_stored: int = 12,
    seed: int = 0,
    study_uid: str | None = None,
) -> Dataset:
    """Build (and write, when ``path`` is given) a DX For Presentation chest radiograph.

    Args:
        path: where to write the Part-10 file, or None to only return the dataset.
        rows, cols: image size (the default is a typical flat-panel chest image).
        bits_stored: stored bits of the 16-bit allocated pixels.
        seed: seed of the noise, so the same call gives the same pixels.
        study_uid: put the image in this study (a new one by default).

    Returns:
        The dataset, uncompressed explicit VR little endian.
    """
    if rows < 1 or cols < 1:
        raise ConfigurationError(f"rows and cols must be positive, got {rows} x {cols}")
    if not 8 < bits_stored <= 16:
        raise ConfigurationError(f"bits_stored must be 9..16, got {bits_stored}")
    pixels = synthetic_chest(rows, cols, bits_stored=bits_stored, seed=seed)
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.SOPClassUID = UID(DigitalXRayImageStorageForPresentation)
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.StudyInstanceUID = study_uid or generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.PatientName, ds.PatientID = SAMPLE_PATIENT_NAME, SAMPLE_PATIENT_ID
    ds.PatientBirthDate, ds.PatientSex = "", "O"
    ds.StudyDate, ds.StudyTime = "20260101", "120000"
    ds.ContentDate, ds.ContentTime = ds.StudyDate, ds.StudyTime
    ds.AccessionNumber, ds.StudyID, ds.ReferringPhysicianName = "", "1", ""
    ds.SeriesNumber, ds.InstanceNumber = 1, 1
    ds.Modality, ds.BodyPartExamined, ds.ViewPosition = "DX", "CHEST", "PA"
    ds.PresentationIntentType, ds.ImageType = "FOR PRESENTATION", ["ORIGINAL", "PRIMARY"]
    ds.Manufacturer = "ChestAid synthetic sample"
    ds.SoftwareVersions = chestaid.__version__
    ds.Rows, ds.Columns = rows, cols
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, bits_stored, bits_stored - 1
    ds.PixelRepresentation = 0
    ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = 1, 0, "US"
    ds.WindowCenter, ds.WindowWidth = 2 ** (bits_stored - 1), 2**bits_stored
    ds.PixelData = pixels.tobytes()
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        ds.save_as(path, enforce_file_format=True)
    return ds
