"""Running the real daemon and real DICOM peers in tests.

``Daemon`` starts ``chestaid-daemon serve`` as a subprocess on a free loopback port with
its own var directory, and knows it is ready when the daemon sends READY=1 to a
notify socket the test owns (the same sd_notify protocol systemd uses). ``StoreSCP``
runs DCMTK's ``storescp`` as a destination. ``wait_until`` polls a condition on an
external process's state with a deadline; it never stands in for a known event.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import Engine, create_engine, text

from tests.bundles import unchecked_default_bundle
from tests.dicom_factory import require_tool

if TYPE_CHECKING:
    from daemon.heatmaps import ImageStatistics

DAEMON = [sys.executable, "-m", "daemon.cli"]


def free_port() -> int:
    """A TCP port on loopback nobody listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(
    predicate: Callable[[], Any], *, timeout: float, what: str, interval: float = 0.05
) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail the test at ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):  # an inline table
        return "{" + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + "}"
    return str(value)


def write_config(
    path: Path, sections: dict[str, dict[str, Any]], destinations: Sequence[dict[str, Any]] = ()
) -> Path:
    """Write a TOML config from ``{section: {key: value}}`` and destination tables.

    A key whose value is None is left out, so that the daemon's own default applies.
    """
    lines: list[str] = []
    for section, values in sections.items():
        lines.append(f"[{section}]")
        lines.extend(f"{k} = {toml_value(v)}" for k, v in values.items() if v is not None)
        lines.append("")
    for dest in destinations:
        lines.append("[[destinations]]")
        lines.extend(f"{k} = {toml_value(v)}" for k, v in dest.items())
        lines.append("")
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


@dataclass
class Daemon:
    """A ``chestaid-daemon serve`` subprocess with its own directory and port."""

    root: Path
    sections: dict[str, dict[str, Any]] = field(default_factory=dict)
    destinations: list[dict[str, Any]] = field(default_factory=list)
    ae_title: str = "CHESTAID"
    port: int = field(default_factory=free_port)
    web_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0
    # Migrate before the first start; off for a process joining a database already
    # migrated by another (several role processes on one PostgreSQL database).
    migrate: bool = True
    # The suite's daemons score with PyTorch as it is (choosing a runtime measures each
    # installed one at start); a benchmark runs the node's own default instead.
    pin_runtime: bool = True
    # A study's report at once, unless a test of the settling asks otherwise; off for a
    # tree that has no study reports at all (a benchmark's previous release).
    settle_now: bool = True

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        base: dict[str, dict[str, Any]] = {
            "node": {"ae_title": self.ae_title, "host": "127.0.0.1", "port": self.port},
            "storage": {"var_dir": str(self.root / "var"), "min_free_mb": 0},
            "worker": {
                "poll_seconds": 1.0,
                **({"study_settle_seconds": 0.0} if self.settle_now else {}),
            },
            "sender": {
                "poll_seconds": 1.0,
                "backoff_initial_seconds": 0.5,
                "backoff_max_seconds": 2.0,
            },
            # The scored path on phantoms; a test wants the checks: bundle=default_bundle_path().
            "model": {
                "threads": 1,
                "bundle": str(unchecked_default_bundle()),
                **({"runtime": "torch", "precision": "f32"} if self.pin_runtime else {}),
            },
            "web": {"host": "127.0.0.1", "port": self.web_port},
        }
        for section, values in self.sections.items():
            base.setdefault(section, {}).update(values)
        self.config = write_config(self.root / "chestaid.toml", base, self.destinations)
        self.log_path = self.root / "daemon.log"

    @property
    def db_url(self) -> str:
        configured = self.sections.get("storage", {}).get("database_url")
        return str(configured) if configured else f"sqlite:///{self.root / 'var' / 'chestaid.db'}"

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run an admin command against this daemon's configuration."""
        return subprocess.run(
            [*DAEMON, *args, "--config", str(self.config)],
            capture_output=True,
            text=True,
            check=check,
            env=self.env(),
            cwd=self.root,
        )

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CHESTAID_")}
        env.update({"OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"})
        return env

    def start(self, *, roles: str = "all", timeout: float = 120.0) -> None:
        """Start and wait for READY=1 on the notify socket."""
        if self.starts == 0 and self.migrate:
            self.cli("db", "upgrade")
        notify_path = self.root / f"notify-{self.starts}.sock"
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
            notify.bind(str(notify_path))
            # Short waits, so a daemon that exits during its start fails the test at once.
            notify.settimeout(1.0)
            env = {**self.env(), "NOTIFY_SOCKET": str(notify_path)}
            log = self.log_path.open("ab")
            self.process = subprocess.Popen(
                [*DAEMON, "serve", "--config", str(self.config), "--roles", roles],
                stdout=log,
                stderr=log,
                env=env,
                cwd=self.root,
            )
            log.close()
            self.starts += 1
            deadline = time.monotonic() + timeout
            while True:
                try:
                    message = notify.recv(4096).decode()
                except TimeoutError:
                    message = ""
                if "READY=1" in message.split("\n"):
                    return
                if self.process.poll() is not None:
                    self.process = None
                    pytest.fail(f"daemon exited before ready:\n{self.logs()[-3000:]}")
                if time.monotonic() > deadline:
                    self.kill()
                    pytest.fail(f"daemon not ready in {timeout} s:\n{self.logs()[-3000:]}")
        notify_path.unlink(missing_ok=True)

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM and wait; returns the exit status."""
        if self.process is None:
            return 0
        self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            # Ask for every thread's stack (the daemon prints them on SIGUSR1), then end it.
            self.process.send_signal(signal.SIGUSR1)
            deadline = time.monotonic() + 10
            while "Current thread" not in self.logs() and time.monotonic() < deadline:
                time.sleep(0.1)
            self.kill()
            pytest.fail(f"daemon did not stop in {timeout} s:\n{self.logs()[-12000:]}")
        self.process = None
        return code

    def kill(self) -> None:
        """SIGKILL, as a crash."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    @contextlib.contextmanager
    def database(self) -> Iterator[Engine]:
        engine = create_engine(self.db_url)
        try:
            yield engine
        finally:
            engine.dispose()

    def query(self, sql: str, **params: Any) -> list[Any]:
        with self.database() as engine, engine.connect() as conn:
            return list(conn.execute(text(sql), params).all())

    def terminal(self) -> bool:
        """Whether every job is terminal, every study's report decided, and every delivery
        delivered or dead."""
        # A tree without study reports (settle_now off) has no report_pending column.
        pending_reports = (
            "(SELECT count(*) FROM studies WHERE report_pending)" if self.settle_now else "0"
        )
        rows = self.query(
            "SELECT (SELECT count(*) FROM jobs WHERE state IN ('queued','running')),"
            " (SELECT count(*) FROM deliveries WHERE state IN ('pending','sending')),"
            f" {pending_reports}"
        )
        return rows[0] == (0, 0, 0)


# storescu proposes uncompressed syntaxes unless told which compressed one to propose.
PROPOSE = {
    "1.2.840.10008.1.2.4.90": "-xv",  # JPEG 2000 lossless
    "1.2.840.10008.1.2.4.91": "-xw",  # JPEG 2000
    "1.2.840.10008.1.2.5": "-xr",  # RLE
    "1.2.840.10008.1.2.4.70": "-xs",  # JPEG lossless SV1
    "1.2.840.10008.1.2.4.50": "-xy",  # JPEG baseline
    "1.2.840.10008.1.2.4.80": "-xt",  # JPEG-LS lossless
    "1.2.840.10008.1.2.1.99": "-xd",  # deflate
}


def propose_option(path: Path) -> list[str]:
    """The storescu option that proposes a file's own transfer syntax (none if native)."""
    import pydicom

    syntax = str(pydicom.dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID)
    return [PROPOSE[syntax]] if syntax in PROPOSE else []


def answers_echo(ae_title: str, port: int) -> bool:
    """Whether a DICOM node on loopback answers DCMTK's echoscu."""
    echoscu = require_tool("echoscu", "dcmtk")
    done = subprocess.run([echoscu, "-aec", ae_title, "127.0.0.1", str(port)], capture_output=True)
    return done.returncode == 0


def storescu(
    files: Sequence[Path],
    port: int,
    *,
    called: str = "CHESTAID",
    calling: str = "MODALITY",
    extra: Sequence[str] = (),
    timeout: float = 120.0,
) -> subprocess.CompletedProcess[str]:
    """Send files with DCMTK's storescu (verbose, so each response's status is logged).

    Files of one compressed transfer syntax are proposed in it, not converted.
    """
    tool = require_tool("storescu", "dcmtk")
    options = {tuple(propose_option(f)) for f in files}
    if not extra and len(options) == 1:
        extra = list(next(iter(options)))
    return subprocess.run(
        [
            tool,
            "-v",
            "-aet",
            calling,
            "-aec",
            called,
            *extra,
            "127.0.0.1",
            str(port),
            *map(str, files),
        ],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@dataclass
class StoreSCP:
    """DCMTK's storescp as a destination, writing what it receives to ``directory``."""

    directory: Path
    ae_title: str = "PACS"
    port: int = field(default_factory=free_port)
    web_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> StoreSCP:
        tool = require_tool("storescp", "dcmtk")
        self.directory.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            # -uf: a unique file per received object, so a duplicate delivery shows.
            [tool, "-aet", self.ae_title, "-od", str(self.directory), "-uf", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(
            lambda: answers_echo(self.ae_title, self.port),
            timeout=30,
            what="storescp to answer C-ECHO",
        )
        return self

    def destination(self, name: str = "pacs") -> dict[str, Any]:
        return {"name": name, "ae_title": self.ae_title, "host": "127.0.0.1", "port": self.port}

    def files(self) -> list[Path]:
        return sorted(p for p in self.directory.iterdir() if p.is_file())

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None


def record_instance_in(
    session: Any, uid: str, *, study: str = "1.2.3", spool_name: str | None = None, size: int = 10
) -> Any:
    """Record a received DX instance and its queued job in ``session``; returns the job."""
    from daemon.db import queue

    return queue.record_instance(
        session,
        sop_instance_uid=uid,
        sop_class_uid="1.2.840.10008.5.1.4.1.1.1.1",
        study_instance_uid=study,
        series_instance_uid=f"{study}.4",
        transfer_syntax_uid="1.2.840.10008.1.2.1",
        modality="DX",
        spool_name=spool_name or f"x/{uid}.dcm",
        size_bytes=size,
        calling_ae_title="MODALITY",
        peer_address="127.0.0.1",
        requested_priority="MEDIUM",
    )


def record_received(sessions: Any, uid: str, *, spool_name: str, size: int = 10) -> int:
    """Record a received DX instance and its queued job directly; returns the job id."""
    from daemon.db.session import writing

    with writing(sessions) as s:
        job_id: int = record_instance_in(s, uid, spool_name=spool_name, size=size).id
        return job_id


def complete_urgent(
    sessions: Any, job_id: int, *, outputs: Sequence[Any], destinations: Sequence[str]
) -> None:
    """Complete a job held by owner "w" as an URGENT result with these outputs, one
    delivery per output and destination."""
    from daemon.db import queue
    from daemon.db.session import writing

    with writing(sessions) as s:
        assert queue.complete_job(
            s,
            job_id=job_id,
            owner="w",
            logit=2.0,
            score=0.9,
            threshold=0.8,
            above_threshold=True,
            priority="URGENT",
            model_version="m",
            calibration_version=1,
            outputs=list(outputs),
            destinations=list(destinations),
        )


def record_scored(
    sessions: Any,
    uid: str,
    *,
    logit: float,
    score: float,
    above: bool,
    threshold: float = 0.5,
    model_version: str = "m",
    study_uid: str | None = None,
    when: Any = None,
    spool_name: str | None = None,
    image: ImageStatistics | None = None,
    cam: str | None = None,
    not_assessable: str | None = None,
    requested_priority: str | None = None,
    quarter_turns: int = 0,
    shadow: bool = False,
    class_probabilities: Sequence[tuple[str, float]] = (),
) -> str:
    """Record a received instance, in its own study, as scored; returns the study UID.

    ``image`` and ``cam`` (text from ``daemon.heatmaps.encode_cam``) are stored on the
    result when given; without them the result is like one scored before they existed.
    ``not_assessable`` (a reason code) records the image as not assessable instead: no
    band, never above the threshold, the detail :func:`not_assessable_detail`.
    ``shadow`` records it as made in shadow mode; ``class_probabilities`` as an N-class
    bundle's result.
    """
    from sqlalchemy import select

    from daemon.db import queue
    from daemon.db.models import Instance
    from daemon.db.session import writing

    study = study_uid or f"s{uid}"
    job_id = record_received(sessions, uid, spool_name=spool_name or f"x/{uid}.dcm")
    with writing(sessions) as s:
        instance = s.scalars(select(Instance).where(Instance.sop_instance_uid == uid)).one()
        instance.study_instance_uid = study
        if when is not None:
            instance.received_at = when
        if requested_priority is not None:
            instance.requested_priority = requested_priority
        claim = queue.claim_job(s, owner="w", lease_seconds=60, max_attempts=3, now=when)
        assert claim is not None and claim.job_id == job_id
        queue.complete_job(
            s,
            job_id=job_id,
            owner="w",
            logit=logit,
            score=score,
            threshold=threshold,
            above_threshold=above and not_assessable is None,
            priority=None if not_assessable else "URGENT" if above else "ROUTINE",
            model_version=model_version,
            calibration_version=1,
            outputs=[],
            destinations=[],
            cam=cam,
            image=image,
            not_assessable=None
            if not_assessable is None
            else queue.NotAssessable(not_assessable, not_assessable_detail(not_assessable)),
            quarter_turns=quarter_turns,
            shadow=shadow,
            class_probabilities=class_probabilities,
            now=when,
        )
    return study


def not_assessable_detail(reason: str) -> str:
    """The sentence :func:`record_scored` stores with a not-assessable reason."""
    return f"The image was found {reason} by a test."
