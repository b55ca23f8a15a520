"""The SOP classes ChestAid accepts, the transfer syntaxes it decodes, and UID syntax.

One list for the whole node: the SCP offers exactly these presentation contexts,
and the readers refuse what is not among the SOP classes. :func:`check_uid` is the
one check of a UID's syntax, for every UID ChestAid relies on.
"""

from __future__ import annotations

import re

from pydicom.uid import (
    JPEG2000,
    BasicTextSRStorage,
    Comprehensive3DSRStorage,
    ComprehensiveSRStorage,
    ComputedRadiographyImageStorage,
    DeflatedExplicitVRLittleEndian,
    DigitalXRayImageStorageForPresentation,
    DigitalXRayImageStorageForProcessing,
    EnhancedSRStorage,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
    SecondaryCaptureImageStorage,
)

from chestaid.errors import InvalidUIDError

# The image storage SOP classes of a chest radiograph.
ACCEPTED_SOP_CLASSES: tuple[str, ...] = (
    ComputedRadiographyImageStorage,
    DigitalXRayImageStorageForPresentation,
    DigitalXRayImageStorageForProcessing,
    SecondaryCaptureImageStorage,
)
# Everything the readers decode: native, deflate, JPEG baseline/extended/lossless,
# JPEG-LS, JPEG 2000 and RLE.
DECODABLE_TRANSFER_SYNTAXES: tuple[str, ...] = (
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    JPEG2000Lossless,
    JPEG2000,
    RLELossless,
)

# The structured report classes a PACS may forward with a study (ChestAid's own SR is
# Comprehensive): received so the study's transfer does not fail, never scored.
REPORT_SOP_CLASSES: tuple[str, ...] = (
    BasicTextSRStorage,
    EnhancedSRStorage,
    ComprehensiveSRStorage,
    Comprehensive3DSRStorage,
)
# The transfer syntaxes of a dataset without compressed pixel data, such as a report.
NATIVE_TRANSFER_SYNTAXES: tuple[str, ...] = (
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
)

MAX_UID_LENGTH = 64
# PS3.5 9.1: components of digits joined by dots; no empty component, and no leading
# zero in a component of more than one digit ("0" itself is a component).
_UID = re.compile(r"(?:0|[1-9][0-9]*)(?:\.(?:0|[1-9][0-9]*))*")


def check_uid(value: object, attribute: str) -> str:
    """Check that a value is a UID by PS3.5 9.1 syntax, and return it as a string.

    One trailing NUL (the padding of an odd-length UI value) is allowed.

    Args:
        value: the value as read (a string, a pydicom UID, None when absent).
        attribute: the attribute's name, for the error (the value is never quoted,
            as it may be anything a peer sent).

    Returns:
        The UID without its padding.

    Raises:
        InvalidUIDError: missing, empty, longer than 64 characters, multi-valued, or
            not digits and dots with the rules above.
    """
    if not isinstance(value, str):
        kind = "missing" if value is None else "not a single value"
        raise InvalidUIDError(f"{attribute} is {kind}", attribute=attribute)
    uid = value.removesuffix("\0")
    if not uid:
        raise InvalidUIDError(f"{attribute} is missing", attribute=attribute)
    if len(uid) > MAX_UID_LENGTH:
        raise InvalidUIDError(
            f"{attribute} is over {MAX_UID_LENGTH} characters", attribute=attribute
        )
    if _UID.fullmatch(uid) is None:
        # Digits and dots only, no empty component, no leading zero in a component.
        raise InvalidUIDError(f"{attribute} is not a valid UID (PS3.5 9.1)", attribute=attribute)
    return uid
