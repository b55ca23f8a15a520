"""The network-to-model-input path as one fuzz target, and its seed corpus.

:func:`score_bytes` runs received bytes the way the worker reads a spooled file
(``read_for_scoring`` with the worker's screen against ChestAid's own outputs) and
then ``preprocess`` with the default bundle's :class:`PreprocessSpec`, without
loading any weights: the model input is the end of the path. Every input must end
in a :class:`~chestaid.errors.ChestAidError` or a valid model input; anything else
raised is a crash (:class:`InvalidModelInputError` when a tensor comes out that the
model must not be given).

:func:`seed_corpus` builds small valid inputs of every kind the path reads (CR/DX,
MONOCHROME1/2, 8/12/16-bit, signed, LUTs, native, deflated and compressed transfer
syntaxes, PNG and JPEG), plus the stored crashers of ``tests/data/fuzz``.
``benchmarks/fuzz_intake.py`` drives it with atheris; the unit tests replay the
crashers through it.
"""

from __future__ import annotations

import io
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydicom.dataset import Dataset
from pydicom.uid import (
    JPEG2000,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGLosslessSV1,
    JPEGLSLossless,
    RLELossless,
)

from chestaid.bundle import read_manifest
from chestaid.dicom_outputs import is_chestaid_output
from chestaid.errors import ChestAidError
from chestaid.imaging import read_for_scoring
from chestaid.preprocess import PreprocessSpec, preprocess

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_BUNDLE = ROOT / "chestaid" / "default_model"
CRASHERS = Path(__file__).resolve().parent / "data" / "fuzz"
# Small, so that each execution is fast: the seeds are 40 x 32 pixels.
FUZZ_MAX_PIXELS = 4096


class InvalidModelInputError(AssertionError):
    """The path gave a tensor the model must not be given (a crash, not a typed refusal)."""


class OwnOutputError(ChestAidError):
    """The worker's screen refused one of ChestAid's own outputs (as daemon/worker.py does)."""


def worker_screen(ds: Dataset) -> None:
    """The header screen the worker passes to ``read_for_scoring``."""
    if is_chestaid_output(ds):
        raise OwnOutputError("one of ChestAid's own outputs, sent back")


@dataclass(frozen=True)
class Target:
    """The path under test with its parameters."""

    spec: PreprocessSpec
    max_pixels: int = FUZZ_MAX_PIXELS

    @classmethod
    def default(cls, max_pixels: int = FUZZ_MAX_PIXELS) -> Target:
        """The default bundle's preprocessing, read from its manifest (no weights loaded)."""
        return cls(spec=read_manifest(DEFAULT_BUNDLE).preprocessing, max_pixels=max_pixels)

    def score_bytes(self, data: bytes) -> str:
        """Run ``data`` from the header screen to the model input.

        Returns:
            ``"model-input"`` when a valid tensor comes out, else the name of the
            typed error that refused the input.

        Raises:
            InvalidModelInputError: a tensor came out that is not a valid model input.
            Anything not a ChestAidError: a crash, passed on as it is.
        """
        try:
            read = read_for_scoring(data, max_pixels=self.max_pixels, screen=worker_screen)
            tensor = preprocess(read.image.pixels, self.spec)
        except ChestAidError as exc:
            return type(exc).__name__
        self.check_model_input(tensor)
        return "model-input"

    def check_model_input(self, tensor: object) -> None:
        """Refuse anything but a finite float32 (1, S, S) tensor from pixels in [0, 1]."""
        size = self.spec.input_size
        if not isinstance(tensor, torch.Tensor):
            raise InvalidModelInputError(f"not a tensor: {type(tensor).__name__}")
        if tuple(tensor.shape) != (1, size, size) or tensor.dtype != torch.float32:
            raise InvalidModelInputError(f"tensor {tuple(tensor.shape)} {tensor.dtype}")
        if not bool(torch.isfinite(tensor).all()):
            raise InvalidModelInputError("tensor has values that are not finite")
        low = (0.0 - self.spec.mean) / self.spec.std
        high = (1.0 - self.spec.mean) / self.spec.std
        slack = 1e-3
        if float(tensor.min()) < low - slack or float(tensor.max()) > high + slack:
            raise InvalidModelInputError(
                f"tensor values [{float(tensor.min())}, {float(tensor.max())}] outside "
                f"[{low}, {high}]: the grey image left [0, 1]"
            )


def _dicom_seeds() -> dict[str, bytes]:
    from tests.dicom_factory import make_dx

    small: dict[str, Any] = {"rows": 40, "cols": 32}
    variants: dict[str, dict[str, Any]] = {
        "dx-mono2-12bit": {},
        "cr-mono1-16bit": {"modality": "CR", "photometric": "MONOCHROME1", "bits_stored": 16},
        "dx-8bit-window": {"bits_stored": 8, "window": (128.0, 200.0)},
        "dx-signed-rescale-sigmoid": {
            "signed": True,
            "rescale": (2.0, -100.0),
            "window": (0.0, 400.0),
            "voi_function": "SIGMOID",
        },
        "dx-modality-lut-voi-lut": {"modality_lut": True, "voi_lut": True},
        "dx-implicit": {"transfer_syntax": ImplicitVRLittleEndian},
        "dx-big-endian": {"transfer_syntax": ExplicitVRBigEndian},
        "dx-deflated": {"transfer_syntax": DeflatedExplicitVRLittleEndian},
        "dx-rle": {"transfer_syntax": RLELossless},
        "dx-jpegls": {"transfer_syntax": JPEGLSLossless},
        "dx-j2k-lossless": {"transfer_syntax": JPEG2000Lossless},
        "dx-j2k": {"transfer_syntax": JPEG2000, "bits_stored": 8},
    }
    if shutil.which("dcmcjpeg"):  # DCMTK encodes the JPEG process 1 and 14 syntaxes
        variants["dx-jpeg-baseline"] = {"transfer_syntax": JPEGBaseline8Bit, "bits_stored": 8}
        variants["dx-jpeg-lossless"] = {"transfer_syntax": JPEGLosslessSV1}
    seeds = {}
    for name, kwargs in variants.items():
        ds = make_dx(**small, **kwargs)
        for keyword in ("ModalityLUTSequence", "VOILUTSequence"):
            for item in ds.get(keyword) or ():
                item["LUTData"].VR = "US"  # the factory leaves US or OW open; a file needs one
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        seeds[f"{name}.dcm"] = buffer.getvalue()
    return seeds


def _raster_seeds() -> dict[str, bytes]:
    from PIL import Image

    ramp = np.add.outer(np.arange(40), np.arange(32)).astype(np.uint8) * 5
    images = {
        "grey8.png": (Image.fromarray(ramp, mode="L"), "PNG"),
        "grey16.png": (Image.fromarray(ramp.astype(np.uint16) * 257), "PNG"),
        "grey.jpg": (Image.fromarray(ramp, mode="L"), "JPEG"),
        "grey-as-rgb.jpg": (Image.fromarray(np.dstack([ramp] * 3), mode="RGB"), "JPEG"),
    }
    seeds = {}
    for name, (image, fmt) in images.items():
        buffer = io.BytesIO()
        image.save(buffer, format=fmt)
        seeds[name] = buffer.getvalue()
    return seeds


def seed_corpus() -> dict[str, bytes]:
    """Small valid inputs of every kind the path reads, and the stored crashers, by name."""
    seeds = {**_dicom_seeds(), **_raster_seeds()}
    if CRASHERS.is_dir():
        for path in sorted(CRASHERS.glob("*.bin")):
            seeds[f"crasher-{path.name}"] = path.read_bytes()
    return seeds
