"""The durable file store: names, atomic writes, refusals when full, no partial files."""

from __future__ import annotations

import os
import shutil
import socket
import time
from pathlib import Path

import pytest

from daemon.errors import SpoolError, SpoolFullError
from daemon.spool import FOREIGN_STALE_SECONDS, TEMP_DIR, FileStore, temp_name


def test_write_is_whole_under_a_name_made_here(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "spool")
    stored = store.write(b"abc", memoryview(b"def"))
    assert stored.size == 6
    assert stored.path.read_bytes() == b"abcdef"
    assert stored.path == store.path(stored.name)
    # YYYY/MM/DD/<32 hex>.dcm: nothing from the data or from UIDs.
    parts = Path(stored.name).parts
    assert len(parts) == 4 and len(parts[-1]) == 32 + len(".dcm")
    assert list((tmp_path / "spool" / TEMP_DIR).iterdir()) == []


def test_names_are_unique(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    names = {store.write(b"x").name for _ in range(50)}
    assert len(names) == 50


def test_refuses_when_free_space_would_drop_below_the_floor(tmp_path: Path) -> None:
    free = shutil.disk_usage(tmp_path).free
    store = FileStore(tmp_path / "spool", min_free_bytes=free + 2**30)
    with pytest.raises(SpoolFullError, match="free"):
        store.write(b"x" * 1000)
    assert [p for p in (tmp_path / "spool").rglob("*") if p.is_file()] == []


def test_names_cannot_leave_the_store(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "spool")
    with pytest.raises(SpoolError, match="leaves"):
        store.path("../../etc/passwd")


def test_incomplete_files_from_a_crash_are_cleared(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    (store.temp_dir / "dead.part").write_bytes(b"half")  # an earlier version's name
    (store.temp_dir / temp_name(pid=DEAD_PID)).write_bytes(b"half")
    kept = store.write(b"whole")
    assert store.clear_incomplete(alive=lambda pid: pid != DEAD_PID) == 2
    assert kept.path.read_bytes() == b"whole"
    assert list(store.temp_dir.iterdir()) == []


DEAD_PID = 999_999_999


def test_files_other_live_writers_of_a_shared_store_are_writing_stay(tmp_path: Path) -> None:
    """A process starting beside others on a shared spool clears only the dead's files."""
    store = FileStore(tmp_path)
    here = socket.gethostname()
    writing_here = store.temp_dir / temp_name(pid=os.getpid())
    writing_elsewhere = store.temp_dir / temp_name(host="other-node", pid=DEAD_PID)
    left_elsewhere = store.temp_dir / temp_name(host="other-node", pid=7)
    dead_here = store.temp_dir / temp_name(host=here, pid=DEAD_PID)
    for path in (writing_here, writing_elsewhere, left_elsewhere, dead_here):
        path.write_bytes(b"half")
    old = time.time() - FOREIGN_STALE_SECONDS - 60
    os.utime(left_elsewhere, (old, old))

    assert store.clear_incomplete(alive=lambda pid: pid != DEAD_PID) == 2
    assert sorted(store.temp_dir.iterdir()) == sorted([writing_here, writing_elsewhere])


def test_an_io_error_leaves_no_partial_file(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    # A name whose directory is a file: the rename fails after the data were written.
    (tmp_path / "blocker").write_bytes(b"")
    with pytest.raises(SpoolError):
        store.write(b"data", name="blocker/x.dcm")
    assert list(store.temp_dir.iterdir()) == []
