"""Rows written out for spreadsheets: CSV whose cells a spreadsheet never runs as formulas."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from typing import Any

# A cell starting with one of these is a formula (or becomes one) in common spreadsheets.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: Any) -> Any:
    """A text value that a spreadsheet would run as a formula, prefixed with an apostrophe;
    anything else as it is."""
    if isinstance(value, str) and value[:1] in FORMULA_START:
        return "'" + value
    return value


def csv_text(rows: Sequence[dict[str, Any]], *, empty_fields: Sequence[str] = ()) -> str:
    """Rows as CSV for spreadsheets, every text cell through :func:`safe_cell`.

    Args:
        rows: dictionaries with the same keys (the first one's keys are the header).
        empty_fields: the header when there are no rows.
    """
    buffer = io.StringIO()
    fields = list(rows[0]) if rows else list(empty_fields)
    writer = csv.DictWriter(buffer, fieldnames=fields)
    writer.writeheader()
    for row in rows:
        writer.writerow({key: safe_cell(value) for key, value in row.items()})
    return buffer.getvalue()
