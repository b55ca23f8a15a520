"""Structured logs: one JSON object per line on standard error (the journal under systemd).

Library modules log with ``logging.getLogger(__name__)`` and put identifiers in
``extra`` (``job_id``, ``sop_instance_uid``, ``study_instance_uid``, ...); only the
entry points call :func:`configure`. Patient names and IDs are never passed to a
logger, and pynetdicom's own logger is held at WARNING because at DEBUG it prints
whole datasets, patient module included.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

import pydicom.config

# The attributes every LogRecord has; anything else came in through ``extra``.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}


def record_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The ``extra`` fields of a record."""
    return {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}


class JsonFormatter(logging.Formatter):
    """Formats a record as one line of JSON: time, level, logger, message, extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(record_fields(record))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """Human-readable lines with the extra fields as key=value."""

    def format(self, record: logging.LogRecord) -> str:
        fields = " ".join(f"{k}={v}" for k, v in record_fields(record).items())
        line = f"{record.levelname:<7} {record.name}: {record.getMessage()}"
        line = f"{line} {fields}" if fields else line
        if record.exc_info:
            line = f"{line}\n{self.formatException(record.exc_info)}"
        return line


def configure(level: str = "INFO", fmt: str = "json") -> None:
    """Send every log to standard error in the chosen format (entry points only)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)
    # pydicom reports invalid values with the value itself (a birth date, a name):
    # received data is not validated on reading, and pydicom's logger stays quiet.
    logging.getLogger("pydicom").setLevel(logging.ERROR)
    pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE
    logging.getLogger("apscheduler").setLevel(logging.ERROR)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    # uvicorn's start-up chatter; its warnings and errors still come through. Request
    # logging is off: URLs carry study UIDs, and the audit log records what matters.
    logging.getLogger("uvicorn").setLevel(logging.WARNING)
    logging.getLogger("uvicorn.error").setLevel(logging.WARNING)
