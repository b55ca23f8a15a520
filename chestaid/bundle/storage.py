"""Writing a bundle's files so that a crash never leaves a half-written one, and their checksums."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


def sha256_file(path: Path) -> str:
    """The SHA-256 of a file's bytes, as hex, read in blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def replace_atomically(target: Path, write: Callable[[str], None]) -> None:
    """Have ``write`` fill a temporary file beside ``target``, then rename it over ``target``.

    The temporary file is removed if ``write`` fails or is interrupted.
    """
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        Path(tmp).replace(target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(path: Path, payload: Any) -> None:
    """Write ``payload`` as indented JSON to ``path``, flushed to disk before the rename."""

    def write(tmp: str) -> None:
        with Path(tmp).open("w", encoding="utf-8") as fh:
            json.dump(payload, fh, indent=2, sort_keys=False, allow_nan=True)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())

    replace_atomically(path, write)
