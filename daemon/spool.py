"""Durable file storage: the spool of received images and the outbox of generated objects.

A file is written to a temporary name in the same file system, fsynced, renamed to its
final name and its directory fsynced, so after a crash it is either whole under its
final name or not there at all. Names are made here (random, grouped by day), never
derived from UIDs, which come from the network.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from daemon.errors import SpoolError, SpoolFullError

logger = logging.getLogger(__name__)

TEMP_DIR = ".incoming"


@dataclass(frozen=True)
class StoredFile:
    """A file stored durably: its name relative to the store and its size."""

    name: str
    path: Path
    size: int


def fsync_directory(path: Path) -> None:
    """Make a directory's entries (a rename, a new file) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _make_dirs(root: Path, relative: Path) -> None:
    """Create ``root/relative`` and fsync each parent whose entries changed."""
    current = root
    for part in relative.parts:
        parent, current = current, current / part
        if not current.is_dir():
            current.mkdir(exist_ok=True)
            fsync_directory(parent)


Buffer = bytes | bytearray | memoryview


def write_durably(path: Path, parts: Sequence[Buffer], *, temp_dir: Path) -> None:
    """Write ``parts``, concatenated, to ``path`` atomically and durably.

    Temp file, fsync, rename, fsync of the directory.

    Raises:
        OSError: the write failed; no partial file is left behind.
    """
    temp = temp_dir / f"{uuid.uuid4().hex}.part"
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        try:
            for part in parts:
                view = memoryview(part)
                while view:
                    written = os.write(fd, view)
                    view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        temp.rename(path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    fsync_directory(path.parent)


class FileStore:
    """A directory of durably written files with names ChestAid makes.

    Args:
        root: the directory (created when missing).
        suffix: the file name suffix, ".dcm".
        min_free_bytes: refuse a write that would leave less free space than this.
    """

    def __init__(self, root: Path, *, suffix: str = ".dcm", min_free_bytes: int = 0) -> None:
        self.root = root
        self.suffix = suffix
        self.min_free_bytes = min_free_bytes
        self.temp_dir = root / TEMP_DIR
        self.temp_dir.mkdir(parents=True, exist_ok=True)

    def clear_incomplete(self) -> int:
        """Remove temporary files a crash left behind (never acknowledged); returns how many."""
        removed = 0
        for stale in self.temp_dir.glob("*.part"):
            stale.unlink(missing_ok=True)
            removed += 1
        if removed:
            logger.warning(
                "removed incomplete files", extra={"count": removed, "dir": str(self.root)}
            )
        return removed

    def free_bytes(self) -> int:
        """Free space on the store's file system, for unprivileged writers."""
        return shutil.disk_usage(self.root).free

    def path(self, name: str) -> Path:
        """The path of a stored file from its name.

        Raises:
            SpoolError: the name would leave the store (a corrupted row).
        """
        candidate = (self.root / name).resolve()
        if not candidate.is_relative_to(self.root.resolve()):
            raise SpoolError(f"stored file name {name!r} leaves {self.root}")
        return candidate

    def new_name(self, stem: str | None = None, *, now: datetime | None = None) -> str:
        """A fresh relative name under today's directory (``YYYY/MM/DD/<random>.dcm``)."""
        day = (now or datetime.now(UTC)).strftime("%Y/%m/%d")
        return f"{day}/{stem or uuid.uuid4().hex}{self.suffix}"

    def write(self, *parts: Buffer, name: str | None = None) -> StoredFile:
        """Store ``parts``, concatenated, durably under a new (or the given) name.

        Raises:
            SpoolFullError: the file system would have less than ``min_free_bytes`` left,
                or ran out of space while writing.
            SpoolError: any other I/O failure. No partial file is left in either case.
        """
        size = sum(memoryview(part).nbytes for part in parts)
        if self.min_free_bytes:
            free = self.free_bytes()
            if free - size < self.min_free_bytes:
                raise SpoolFullError(
                    f"{self.root} has {free // 2**20} MiB free; keeping {self.min_free_bytes // 2**20} MiB free"
                )
        name = name or self.new_name()
        path = self.root / name
        try:
            _make_dirs(self.root, Path(name).parent)
            write_durably(path, parts, temp_dir=self.temp_dir)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise SpoolFullError(f"{self.root} is full: {exc.strerror}") from exc
            raise SpoolError(f"cannot store a file in {self.root}: {exc}") from exc
        return StoredFile(name=name, path=path, size=size)

    def remove(self, name: str) -> None:
        """Remove a stored file (absent is fine)."""
        self.path(name).unlink(missing_ok=True)
