"""The one error hierarchy of ChestAid, rooted at :class:`ChestAidError`.

Boundaries map these to their own language: the worker to job states, the SCP to
DICOM status codes, the command line to a one-line message and a non-zero exit.
"""


class ChestAidError(Exception):
    """Base of every error ChestAid raises on purpose."""


class ConfigurationError(ChestAidError, ValueError):
    """A setting or argument is out of its range (also a ValueError, as callers expect)."""


class ImageError(ChestAidError):
    """An input image cannot be turned into model input."""


class UnsupportedImageError(ImageError):
    """The image is readable but not something ChestAid scores (colour, multi-frame...)."""


class UnknownFormatError(UnsupportedImageError):
    """The file is not a DICOM, PNG or JPEG file, judged by its content."""


class NotChestRadiographError(UnsupportedImageError):
    """The image's attributes say it is not a chest radiograph (modality, body part)."""


class ImageTooLargeError(ImageError):
    """The image exceeds the configured pixel budget; refused before decoding."""


class DecodedSizeError(ImageTooLargeError):
    """The header declares more decoded bytes (pixels x channels x bytes per sample) than
    the budget allows; refused before decoding."""


class CorruptImageError(ImageError):
    """The file is truncated, corrupt or has no usable pixel data."""


class InvalidUIDError(ChestAidError):
    """A UID is missing or breaks the UID syntax (PS3.5 9.1); names the attribute.

    Args:
        message: what is wrong, naming the attribute and never quoting the value.
        attribute: the attribute's name, as a person reads it ("SOP Instance UID").
    """

    def __init__(self, message: str, *, attribute: str) -> None:
        super().__init__(message)
        self.attribute = attribute


class BundleError(ChestAidError):
    """A model bundle is missing, damaged, or does not match its manifest."""


class CalibrationError(ChestAidError):
    """A calibrator cannot be fitted or applied (too few cases, one class only...)."""


class DatasetError(ChestAidError):
    """A training or evaluation data folder is unusable (missing classes, no images...)."""


class ModelError(ChestAidError):
    """A model cannot be built or its weights cannot be loaded."""


class TrainingError(ChestAidError):
    """A training run cannot start or go on (unreadable checkpoint, another run's checkpoint...)."""


class OutputError(ChestAidError):
    """A DICOM output cannot be built (the source lacks its UIDs, or highdicom refuses)."""
