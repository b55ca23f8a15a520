"""The patient-level development split stored beside a bundle's weights (``splits.json``)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from chestaid.bundle.storage import write_json_atomic
from chestaid.errors import BundleError

SPLITS_NAME = "splits.json"


def write_splits(path: Path, splits: Mapping[str, Any]) -> None:
    """Store the development split in the bundle folder ``path``."""
    write_json_atomic(path / SPLITS_NAME, dict(splits))


def read_splits(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The development split stored with a bundle, or None when it has none."""
    p = Path(path) / SPLITS_NAME
    if not p.is_file():
        return None
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"cannot read {p}: {exc}") from exc
    if not isinstance(data, dict):
        raise BundleError(f"{p} is not a JSON object")
    return data
