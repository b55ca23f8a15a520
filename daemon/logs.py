"""Structured logs: one JSON object per line on standard error (the journal under systemd).

Library modules log with ``logging.getLogger(__name__)`` and put identifiers in
``extra`` (``job_id``, ``sop_instance_uid``, ``study_instance_uid``, ...); only the
entry points call :func:`configure`. Patient names and IDs are never passed to a
logger, and pynetdicom's own logger is held at WARNING because at DEBUG it prints
whole datasets, patient module included.

Libraries that read datasets quote their values in warnings ("The string "DOE" is
unlikely to represent the intended person name"): warnings (the ``warnings`` module)
become log records, and the text of those raised by, and the records and exception
texts logged by, such a library is withheld; the library and category stay.
"""

from __future__ import annotations

import json
import logging
import sys
import warnings
from datetime import UTC, datetime
from types import FrameType
from typing import Any, TextIO

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


# Libraries that may quote dataset values (names, IDs, dates) in what they log or warn.
DATASET_LIBRARIES = frozenset({"pydicom", "highdicom", "pynetdicom"})
# Of those, the ones whose log messages themselves are withheld; pynetdicom's (held at
# WARNING) are about the protocol and are kept, only its exception texts are withheld.
_WITHHELD_MESSAGES = frozenset({"pydicom", "highdicom"})
WITHHELD = "text withheld: it may quote dataset values"
_warnings_logger = logging.getLogger("py.warnings")


def _library(module: str) -> str:
    return module.split(".", 1)[0] or "unknown"


class WithholdDatasetValues(logging.Filter):
    """Rewrites records of dataset libraries so no dataset value reaches the log.

    pydicom's and highdicom's messages become a fixed description; an exception's text
    (pynetdicom logs those of pydicom, which quote values) is kept as its type only.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        library = _library(record.name)
        if library not in DATASET_LIBRARIES:
            return True
        if library in _WITHHELD_MESSAGES:
            record.msg = f"{library} {record.levelname.lower()} ({WITHHELD})"
            record.args = None
        if record.exc_info:
            exc_type = record.exc_info[0]
            record.exception_type = exc_type.__name__ if exc_type is not None else "unknown"
            record.exc_info = None
            record.exc_text = None
        record.stack_info = None
        return True


def _raising_module(frame: FrameType | None) -> str:
    """The module of the code that called ``warnings.warn`` (whatever its stacklevel)."""
    while frame is not None:
        module = str(frame.f_globals.get("__name__", ""))
        if module not in ("warnings", __name__):
            return module
        frame = frame.f_back
    return "unknown"


def _log_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    """``warnings.showwarning``: the warning as a log record, withheld text if need be."""
    library = _library(_raising_module(sys._getframe(1)))
    text = f"{library} warning ({WITHHELD})" if library in DATASET_LIBRARIES else str(message)
    _warnings_logger.warning(text, extra={"category": category.__name__, "library": library})


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
    handler.addFilter(WithholdDatasetValues())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Warnings are log records too: one JSON object a line, and no dataset values.
    warnings.showwarning = _log_warning
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)
    # pydicom reports invalid values with the value itself (a birth date, a name):
    # received data is not validated on reading, and pydicom's logger stays quiet.
    logging.getLogger("pydicom").setLevel(logging.ERROR)
    pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE
    # highdicom narrates each object it builds at INFO (a dozen lines an image, each
    # withheld): its warnings and errors still come through.
    logging.getLogger("highdicom").setLevel(logging.WARNING)
    logging.getLogger("apscheduler").setLevel(logging.ERROR)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    # uvicorn's start-up chatter; its warnings and errors still come through. Request
    # logging is off: URLs carry study UIDs, and the audit log records what matters.
    logging.getLogger("uvicorn").setLevel(logging.WARNING)
    logging.getLogger("uvicorn.error").setLevel(logging.WARNING)
