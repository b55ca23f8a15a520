"""The grey image every reader gives: float32 pixels in [0, 1], 1 = bright as displayed."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from chestaid.errors import DecodedSizeError

DEFAULT_MAX_PIXELS = 40_000_000
MIB = 1 << 20


def _mib(size: int) -> str:
    return f"{size / MIB:.0f} MiB" if size >= 10 * MIB else f"{size / MIB:.2f} MiB"


def check_decoded_size(
    *,
    rows: int,
    columns: int,
    samples: int,
    bits: int,
    frames: int = 1,
    max_decoded_bytes: int | None,
) -> int:
    """The bytes an image's header says its pixels decode to; refused over the budget.

    Each sample takes whole bytes (a 1-bit or 12-bit sample is decoded to 1 or 2 bytes).

    Args:
        rows, columns, samples, frames: as the header declares them.
        bits: bits per sample as stored (PNG bit depth, DICOM Bits Allocated).
        max_decoded_bytes: the budget; None for none.

    Returns:
        The declared decoded size in bytes.

    Raises:
        DecodedSizeError: over ``max_decoded_bytes``.
    """
    per_sample = max(1, (bits + 7) // 8)
    declared = rows * columns * max(1, samples) * per_sample * max(1, frames)
    if max_decoded_bytes is not None and declared > max_decoded_bytes:
        raise DecodedSizeError(
            f"the image declares {rows} x {columns} pixels"
            + (f" x {frames} frames" if frames > 1 else "")
            + f" x {samples} channel(s) x {8 * per_sample} bits = {_mib(declared)}"
            f" decoded; at most {_mib(max_decoded_bytes)} are accepted"
        )
    return declared


@dataclass(frozen=True)
class GreyImage:
    """A decoded radiograph: float32 pixels in [0, 1], 1 = bright as displayed."""

    pixels: np.ndarray
    source_format: str  # "dicom", "png" or "jpeg"
    modality: str | None
    photometric: str | None
    bits_stored: int | None
    # Decoded at 1/2**reduction of the stored size per side (0: at full size), and the
    # stored (rows, columns) when reduced.
    reduction: int = 0
    stored_shape: tuple[int, int] | None = None

    @property
    def full_shape(self) -> tuple[int, int]:
        """The image's (rows, columns) as stored, whatever resolution it was decoded at."""
        if self.stored_shape is not None:
            return self.stored_shape
        rows, columns = self.pixels.shape
        return int(rows), int(columns)
