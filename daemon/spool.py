"""Durable file storage: the spool of received images and the outbox of generated objects.

A file is written to a temporary name in the same file system, fsynced, renamed to its
final name and its directory fsynced, so after a crash it is either whole under its
final name or not there at all. Names are made here (random, grouped by day), never
derived from UIDs, which come from the network.

A temporary file's name says which process writes it (host and pid), because the
spool and the outbox may be shared by several processes and machines: a process
starting after a crash clears what dead processes of its own host left, never a
file another live process is writing.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import socket
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from daemon.errors import SpoolError, SpoolFullError

logger = logging.getLogger(__name__)

TEMP_DIR = ".incoming"
# A temporary file of another host older than this is a leftover: no write takes a day.
FOREIGN_STALE_SECONDS = 24 * 3600


def temp_name(host: str | None = None, pid: int | None = None) -> str:
    """A new temporary file name naming its writer: ``host+pid+random.part``."""
    host = host or socket.gethostname()
    pid = os.getpid() if pid is None else pid
    return f"{host}+{pid}+{uuid.uuid4().hex}.part"


def _writer(name: str) -> tuple[str, int] | None:
    """The (host, pid) a temporary file's name gives, or None (an earlier version's)."""
    parts = name.removesuffix(".part").rsplit("+", 2)
    if len(parts) != 3 or not parts[1].isdigit():
        return None
    return parts[0], int(parts[1])


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
    temp = temp_dir / temp_name()
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

    def clear_incomplete(
        self, *, alive: Callable[[int], bool], host: str | None = None, now: float | None = None
    ) -> int:
        """Remove temporary files a crash left behind (never acknowledged); returns how many.

        Removed: files of this host whose writing process no longer runs (``alive``
        says, by pid), files of an earlier version that named no writer, and files of
        other hosts untouched for :data:`FOREIGN_STALE_SECONDS`. A file another live
        process is writing, here or on another machine sharing the store, stays.
        """
        host = host or socket.gethostname()
        now = time.time() if now is None else now
        removed = 0
        for stale in self.temp_dir.glob("*.part"):
            writer = _writer(stale.name)
            if writer is not None:
                if writer[0] == host and alive(writer[1]):
                    continue
                try:
                    age = now - stale.stat().st_mtime
                except FileNotFoundError:
                    continue
                if writer[0] != host and age < FOREIGN_STALE_SECONDS:
                    continue
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
