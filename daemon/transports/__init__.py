"""Delivery transports, one module per destination kind, behind one interface.

Importing the package registers the built-in kinds; a new kind is a new module
here and one import below.
"""

from daemon.transports import dicom, dicomweb, hl7
from daemon.transports.base import (
    DestinationLike,
    Outcome,
    PermanentFailure,
    Stored,
    TransientFailure,
    Transport,
    TransportSession,
    kinds,
    register,
    transport_for,
)

__all__ = [
    "DestinationLike",
    "Outcome",
    "PermanentFailure",
    "Stored",
    "TransientFailure",
    "Transport",
    "TransportSession",
    "dicom",
    "dicomweb",
    "hl7",
    "kinds",
    "register",
    "transport_for",
]
