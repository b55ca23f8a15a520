"""The running daemon: starts the chosen roles in one process and stops them cleanly.

Roles: ``scp`` (receive), ``worker`` (score), ``sender`` (deliver), ``scheduler``
(maintenance and monitoring jobs), ``web`` (the web interface and JSON API). One process runs them all by default; a larger site runs them as
separate processes against one database and a shared spool.

Start order: database check, stores, model, sender, workers, then the SCP last, so
nothing is accepted before it can be handled; READY=1 is sent to systemd after.
In shadow mode (``[site] mode``) the sender does not start and workers create no
deliveries: results are kept here and sent nowhere.
Stop (SIGTERM): stop accepting associations and let those in flight finish, let
each worker finish the job in hand and give back any claim, stop the sender after
its round, stop the scheduler, close the database.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any, cast

from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy import Engine

from daemon import metrics, systemd
from daemon.connections import (
    GuardedAssociationServer,
    carrying_a_message,
    close_at_once,
    stop_acceptor_reactors,
)
from daemon.db import queue
from daemon.db.migrate import check_schema
from daemon.db.session import SessionFactory, make_engine, make_session_factory, writing
from daemon.hl7.listener import ReportListener
from daemon.maintenance import registry
from daemon.roles import ROLES
from daemon.scheduler import start_scheduler
from daemon.scp import IntakeMonitor, StoreHandler, build_ae, handlers
from daemon.sender import Sender
from daemon.serving import ActiveModel, Serving
from daemon.settings import Settings
from daemon.spool import FileStore
from daemon.tls import node_context
from daemon.web.server import WebServer, first_start
from daemon.worker import Worker

logger = logging.getLogger(__name__)


def _process_alive(pid: int) -> bool:
    """Whether a process with this id runs on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass
class Service:
    """The daemon's roles in this process."""

    settings: Settings
    roles: Collection[str] = ROLES
    engine: Engine | None = None
    sessions: SessionFactory | None = None
    model: ActiveModel | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _work_waiting: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _server: GuardedAssociationServer | None = None
    _handler: StoreHandler | None = None
    _sender: Sender | None = None
    _scheduler: BackgroundScheduler | None = None
    _watchdog: systemd.Watchdog | None = None
    _web: WebServer | None = None
    _reports: ReportListener | None = None
    _metrics: metrics.Listener | None = None

    def start(self) -> None:
        """Start every role; raises (and starts nothing that stays running) on bad setup.

        Raises:
            SchemaError: the database is not migrated to this version.
            BundleError, ConfigurationError: the model cannot be served.
            OSError: the port cannot be bound.
        """
        s = self.settings
        self.engine = make_engine(s.storage.url, busy_timeout=s.storage.database_busy_timeout)
        check_schema(self.engine)
        sessions = self.sessions = make_session_factory(self.engine)
        spool = FileStore(s.storage.spool, min_free_bytes=s.storage.min_free_mb * 2**20)
        outbox = FileStore(s.storage.outbox)
        # Temporary files are cleared only by the role that writes them, and only those
        # of dead processes: the stores may be shared with other processes and hosts.
        if "scp" in self.roles:
            spool.clear_incomplete(alive=_process_alive)
        if "worker" in self.roles:
            outbox.clear_incomplete(alive=_process_alive)
        with writing(sessions) as session:
            ended = queue.expire_leases_of_dead_owners(
                session, host=socket.gethostname(), alive=_process_alive
            )
        if ended:
            logger.warning(
                "claims of a crashed process on this host released", extra={"count": ended}
            )
        # By name, the outputs each destination is sent (an HL7 RIS takes only the SR).
        destinations = {d.name: d.output_kinds for d in s.destinations}
        serving = Serving(s.model, s.priority.bands, sessions)
        intake = IntakeMonitor() if "scp" in self.roles else None
        # Made before any role starts, so an unusable certificate starts nothing.
        scp_tls = node_context(s.node) if "scp" in self.roles else None

        exported = metrics.exported(s.metrics, sessions, serving) if s.metrics.enabled else None
        if exported is not None and s.metrics.listen:
            # First: a port in use fails the start before any role runs.
            self._metrics = metrics.Listener(s.metrics, exported)
        if "sender" in self.roles and s.site.shadow:
            # Shadow mode sends nothing, not even deliveries left from a live period.
            logger.warning("shadow mode: the sender does not start; nothing is sent")
        elif "sender" in self.roles:
            self._sender = Sender(
                sessions=sessions,
                outbox=outbox,
                destinations=s.destinations,
                node=s.node,
                settings=s.sender,
            )
            self._sender.start()
        if "worker" in self.roles:
            self.model = serving.preload()
            wake_sender = self._sender.wake if self._sender is not None else (lambda: None)
            for index in range(s.worker.count):
                worker = Worker(
                    sessions=sessions,
                    spool=spool,
                    outbox=outbox,
                    # The active local calibration (if an admin activated one) is looked
                    # up for every study, so a new one is used without a restart.
                    model=serving.model,
                    destinations=destinations,
                    settings=s.worker,
                    wakeup=self._work_waiting,
                    on_outputs=wake_sender,
                    intake_idle=intake.wait_idle if intake is not None else None,
                    shadow=s.site.shadow,
                )
                thread = threading.Thread(
                    target=worker.run,
                    args=(self._stop,),
                    name=f"chestaid-worker-{index}",
                    daemon=True,
                )
                thread.start()
                self._threads.append(thread)
        if "scheduler" in self.roles:
            self._scheduler = start_scheduler(registry(s, serving), sessions)
        if "hl7" in self.roles and s.hl7_listener.enabled:
            # Before the SCP: a port in use or an unusable certificate starts nothing more.
            self._reports = ReportListener(s.hl7_listener, sessions)
            self._reports.start()
        if "web" in self.roles:
            first_start(sessions)
            self._web = WebServer(s, sessions, serving=serving, metrics=exported)
            self._web.start()
        if "scp" in self.roles:
            handler = self._handler = StoreHandler(
                spool=spool,
                sessions=sessions,
                allow=s.allow,
                on_queued=self._work_waiting.set,
                intake=intake,
            )
            ae = build_ae(s.node)
            self._server = cast(
                GuardedAssociationServer,
                ae.start_server(
                    (s.node.host, s.node.port),
                    block=False,
                    evt_handlers=handlers(handler),
                    ssl_context=scp_tls,
                ),
            )
        logger.info(
            "ChestAid daemon ready",
            extra={
                "roles": list(self.roles),
                "ae_title": s.node.ae_title,
                "address": f"{s.node.host}:{s.node.port}",
                "database": self.engine.url.render_as_string(hide_password=True),
                "destinations": sorted(destinations),
                "mode": s.site.mode,
            },
        )
        systemd.notify("READY=1", f"STATUS=serving roles {','.join(self.roles)}")
        self._watchdog = systemd.Watchdog(self.healthy)
        self._watchdog.start()

    def healthy(self) -> bool:
        """Whether every role this process runs is alive (the watchdog's test)."""
        if any(not t.is_alive() for t in self._threads):
            return False
        if self._sender is not None and not self._sender.running:
            return False
        if self._web is not None and not self._web.alive:
            return False
        if self._reports is not None and not self._reports.alive:
            return False
        if self._metrics is not None and not self._metrics.alive:
            return False
        return self._scheduler is None or bool(self._scheduler.running)

    def wait(self) -> None:
        """Block until :meth:`request_stop` is called."""
        self._stop.wait()

    def request_stop(self, *_: Any) -> None:
        """Ask the service to stop (safe from a signal handler)."""
        self._stop.set()
        self._work_waiting.set()

    def stop(self) -> None:
        """Stop every role in order: intake, workers, sender, scheduler, database."""
        systemd.notify("STOPPING=1")
        self.request_stop()
        if self._watchdog is not None:
            self._watchdog.stop()
        if self._server is not None:
            server, self._server = self._server, None
            server.shutdown()  # no new associations
            if self._handler is not None:
                self._handler.draining.set()  # C-STOREs still arriving are refused
            # Associations with no C-STORE on its way (idle, never established, or left
            # behind by a failed TLS handshake) are aborted at once: nothing of theirs
            # was acknowledged, and a sender sends again what was not. Those receiving or
            # handling one get one deadline for all, well inside systemd's stop time.
            in_flight: list[Any] = []
            idle: list[Any] = []
            for assoc in server.stop_admitting():
                busy = carrying_a_message(assoc) or (
                    self._handler is not None and self._handler.handling(assoc)
                )
                (in_flight if busy else idle).append(assoc)
            established = [assoc for assoc in idle if assoc.is_established]
            for assoc in idle:
                close_at_once(assoc)
            logger.info(
                "stopping: open associations",
                extra={"aborted_without_a_message": len(idle), "waited_for": len(in_flight)},
            )
            deadline = time.monotonic() + min(30.0, self.settings.node.dimse_timeout)
            # An association never established has nothing to finish once its socket is
            # shut (its thread may sit out the ACSE timeout; it is a daemon thread).
            for assoc in in_flight + established:
                assoc.join(timeout=max(0.0, deadline - time.monotonic()))
                if assoc.is_alive():
                    assoc.abort()
            stop_acceptor_reactors()
        if self._web is not None:
            self._web.stop()
        if self._reports is not None:
            self._reports.stop()  # a report being taken commits first; unanswered ones are resent
            self._reports = None
        for thread in self._threads:
            thread.join()
        self._threads.clear()
        if self._sender is not None:
            self._sender.stop()
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=True)
        if self._metrics is not None:
            self._metrics.stop()
            self._metrics = None
        if self.engine is not None:
            self.engine.dispose()
        logger.info("ChestAid daemon stopped")
