"""A real PostgreSQL server for the tests, started in a temporary directory.

Debian's ``postgresql`` package supplies the binaries; the server is initialised
afresh in a temporary directory (in en_US.UTF-8 when the system has it, see
:func:`_locale`), listens on a free loopback port with trust
authentication, and is stopped when the test session ends. PostgreSQL refuses to
run as root, so as root the server runs as the package's ``postgres`` account.

Each test gets a database of its own, copied from a template migrated once
(``CREATE DATABASE ... TEMPLATE``), so tests never see each other's rows.

When the binaries are missing, :func:`require_postgres` skips naming the package (and
when the psycopg driver is, naming the ``postgresql`` extra); under ``CI=true`` that
is a failure, as for every other missing peer.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import pytest

PACKAGE = "postgresql"

# For a test whose weight is computation, not the database (image statistics, fitting
# a calibration): it runs on SQLite only, keeping the suite's time in bounds.
SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
POSTGRESQL_ONLY = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
_START_TIMEOUT_S = 60


def _binaries() -> Path | None:
    """The newest installed PostgreSQL's bin directory, or None."""
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    if found:
        return found[-1].parent
    pg_ctl = shutil.which("pg_ctl")
    return Path(pg_ctl).parent if pg_ctl else None


def _missing(message: str) -> NoReturn:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{message}; under CI=true a missing peer is a failure")
    pytest.skip(message)


def require_postgres() -> Path:
    """The PostgreSQL bin directory; skips naming the package when absent, or when the
    driver is (fails under CI)."""
    bindir = _binaries()
    if bindir is None:
        _missing(f"PostgreSQL is not installed (Debian package {PACKAGE!r})")
    if importlib.util.find_spec("psycopg") is None:
        _missing("the psycopg driver is not installed (ChestAid's extra 'postgresql')")
    return bindir


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class PostgresServer:
    """A running server: its port, and how to make and drop databases on it."""

    bindir: Path
    root: Path
    port: int
    user: str
    _template: str | None = None

    def url(self, database: str = "postgres") -> str:
        """The SQLAlchemy URL of ``database`` on this server (psycopg 3 driver)."""
        return f"postgresql+psycopg://{self.user}@127.0.0.1:{self.port}/{database}"

    def _psql(self, sql: str) -> None:
        subprocess.run(
            [
                str(self.bindir / "psql"),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                self.user,
                "-d",
                "postgres",
                "-v",
                "ON_ERROR_STOP=1",
                "-q",
                "-c",
                sql,
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )

    def create_database(self, *, template: str | None = None) -> str:
        """A new empty (or template-copied) database; returns its name."""
        name = f"t_{uuid.uuid4().hex[:16]}"
        suffix = f" TEMPLATE {template}" if template else ""
        self._psql(f"CREATE DATABASE {name}{suffix}")
        return name

    def drop_database(self, name: str) -> None:
        """Drop ``name``, ending any connection a test left open to it."""
        self._psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def migrated_database(self) -> str:
        """A fresh database at the head revision, copied from a template migrated once."""
        if self._template is None:
            from daemon.db.migrate import upgrade
            from daemon.db.session import make_engine

            template = self.create_database()
            engine = make_engine(self.url(template))
            try:
                upgrade(engine)
            finally:
                engine.dispose()
            self._template = template
        return self.create_database(template=self._template)

    def stop(self) -> None:
        _run_as(
            self.user,
            [str(self.bindir / "pg_ctl"), "-D", str(self.root / "data"), "-m", "immediate", "stop"],
            check=False,
        )


def _locale() -> str:
    """A language collation when the system has one, as a site's server would have
    (Debian's default cluster takes the system's locale): it sorts and compares text
    unlike bytes, which is what a test on it should see. Else C.UTF-8."""
    listed = subprocess.run(["locale", "-a"], capture_output=True, text=True, check=False)
    names = {name.lower().replace("-", "") for name in listed.stdout.split()}
    return "en_US.UTF-8" if "en_us.utf8" in names else "C.UTF-8"


def _account() -> str:
    """The account the server runs as: this user, or ``postgres`` when this is root."""
    if os.geteuid() != 0:
        return pwd.getpwuid(os.geteuid()).pw_name
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        pytest.skip(f"running as root needs the 'postgres' account (Debian package {PACKAGE!r})")
    return "postgres"


def _run_as(
    user: str, argv: list[str], *, check: bool = True
) -> subprocess.CompletedProcess[bytes]:
    if os.geteuid() == 0 and user != "root":
        argv = ["runuser", "-u", user, "--", *argv]
    return subprocess.run(argv, check=check, capture_output=True, timeout=_START_TIMEOUT_S)


@contextlib.contextmanager
def running_server() -> Iterator[PostgresServer]:
    """Initialise and start a server in a temporary directory; stop and remove it after."""
    bindir = require_postgres()
    user = _account()
    root = Path(tempfile.mkdtemp(prefix="chestaid-pg-"))
    if os.geteuid() == 0:
        entry = pwd.getpwnam(user)
        os.chown(root, entry.pw_uid, entry.pw_gid)
    data = root / "data"
    port = _free_port()
    server = PostgresServer(bindir=bindir, root=root, port=port, user=user)
    try:
        _run_as(
            user,
            [
                str(bindir / "initdb"),
                "-D",
                str(data),
                "-U",
                user,
                "--auth=trust",
                "--encoding=UTF8",
                f"--locale={_locale()}",
                "--lc-messages=C",
                "--no-sync",
            ],
        )
        options = (
            f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={root}"
            " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
            " -c max_connections=200"
        )
        _run_as(
            user,
            [
                str(bindir / "pg_ctl"),
                "-D",
                str(data),
                "-o",
                options,
                "-l",
                str(root / "server.log"),
                "-w",
                "-t",
                str(_START_TIMEOUT_S),
                "start",
            ],
        )
        watchdog = _watchdog(server)
        try:
            yield server
        finally:
            watchdog.kill()
            watchdog.wait()
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


def _watchdog(server: PostgresServer) -> subprocess.Popen[bytes]:
    """A process that stops the server and removes its directory once this test process
    is gone, when it ends without its teardown (killed, or interrupted under xdist)."""
    stop = [str(server.bindir / "pg_ctl"), "-D", str(server.root / "data"), "-m", "immediate"]
    if os.geteuid() == 0 and server.user != "root":
        stop = ["runuser", "-u", server.user, "--", *stop]
    script = 'while kill -0 "$1" 2>/dev/null; do sleep 1; done; shift 2; "$@" stop; rm -rf "$0"'
    return subprocess.Popen(
        ["sh", "-c", script, str(server.root), str(os.getpid()), "--", *stop],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # a Ctrl-C to the test run's group does not end it
    )
