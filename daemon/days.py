"""Ranges of whole days asked for by an admin (from, to), as UTC times for queries."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from daemon.errors import DaemonError

_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")  # ASCII digits only


class DayRangeError(DaemonError):
    """A from or to date that is not a date, or a from date after the to date."""


@dataclass(frozen=True)
class DayRange:
    """Whole days ``first`` to ``last``, both included; None leaves that end open."""

    first: date | None = None
    last: date | None = None

    @property
    def since(self) -> datetime | None:
        """The start of the first day (UTC), or None."""
        if self.first is None:
            return None
        return datetime(self.first.year, self.first.month, self.first.day, tzinfo=UTC)

    @property
    def until(self) -> datetime | None:
        """The start of the day after the last (UTC), or None (also after the last date
        there is)."""
        if self.last is None or self.last == date.max:
            return None
        after = self.last + timedelta(days=1)
        return datetime(after.year, after.month, after.day, tzinfo=UTC)

    def as_text(self) -> dict[str, str]:
        """The range as the form shows it (empty for an open end)."""
        return {
            "from": self.first.isoformat() if self.first else "",
            "to": self.last.isoformat() if self.last else "",
        }


def _day(text: str, name: str) -> date | None:
    text = text.strip()
    if not text:
        return None
    if not _DAY.fullmatch(text):
        raise DayRangeError(f"{name} date: write it as YYYY-MM-DD, for example 2026-03-31")
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise DayRangeError(f"{name} date: there is no such day ({text})") from exc


def day_range(first: str = "", last: str = "") -> DayRange:
    """The range of days between two dates given as ``YYYY-MM-DD`` (either may be empty).

    Raises:
        DayRangeError: a date that is not one, or the from date after the to date.
    """
    start, end = _day(first, "From"), _day(last, "To")
    if start is not None and end is not None and start > end:
        raise DayRangeError("The from date is after the to date.")
    return DayRange(start, end)
