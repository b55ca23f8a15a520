"""The daemon's errors, in the same hierarchy as the ML core's (rooted at ChestAidError)."""

from __future__ import annotations

from chestaid.errors import ChestAidError


class DaemonError(ChestAidError):
    """A failure of the service around the model."""


class SchemaError(DaemonError):
    """The database schema is missing, behind or ahead of this ChestAid."""


class SpoolError(DaemonError):
    """A received image could not be stored durably (disk full, I/O error)."""


class SpoolFullError(SpoolError):
    """The spool's file system has less free space than configured."""


class DeliveryError(DaemonError):
    """An output could not be delivered to a destination."""
