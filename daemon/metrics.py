"""Prometheus metrics: what each process counts, and what the database holds.

Two kinds of value, exported side by side:

- Counted by the process that does the work (module-level metrics on
  prometheus_client's default registry, with its process and Python collectors):
  C-STORE answers by status code (the SCP), the time to score one image and the time
  from receipt to the result stored (the worker), delivery attempts by outcome and the
  time from receipt to delivery (the sender). With roles split over processes, each
  process serves its own (``[metrics] listen``) and Prometheus adds them up; no shared
  directory is needed, and processes on other machines work the same.
- Read from the database at each scrape (:class:`DatabaseCollector`): jobs and
  deliveries in their open and failed states, the oldest queued job's age, and the model and calibration
  versions in service. Any process can serve these; they are the same everywhere.

Labels never carry patient data or UIDs: status codes, states, outcomes, destination
names from the configuration, and model and calibration versions.
"""

from __future__ import annotations

import logging
import secrets
import ssl
from collections.abc import Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Protocol

from prometheus_client import REGISTRY, Counter, Histogram, generate_latest, start_http_server
from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily, Metric
from pydicom.dataset import Dataset
from sqlalchemy import ColumnElement, func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from chestaid.errors import BundleError, ConfigurationError
from daemon.db.models import Delivery, DeliveryState, Job, JobState, utcnow
from daemon.db.session import SessionFactory, reading
from daemon.serving import Serving
from daemon.settings import MetricsSettings

logger = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Seconds: scoring one image takes from a fraction of a second (a small model) to tens
# of seconds (a large image on a busy CPU); receipt to result or delivery adds the wait.
SCORING_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 30.0, 60.0, 120.0)
LATENCY_BUCKETS = (
    0.5, 1.0, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0,
    120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0,
)  # fmt: skip

CSTORE = Counter(
    "chestaid_cstore",
    "C-STORE requests answered by this process's SCP, by the status answered",
    ["status"],
)
SCORING = Histogram(
    "chestaid_scoring_seconds",
    "Time a worker of this process spends on one image: read, score, write outputs",
    buckets=SCORING_BUCKETS,
)
END_TO_END = Histogram(
    "chestaid_end_to_end_seconds",
    "Time from an image's receipt to its result being stored",
    buckets=LATENCY_BUCKETS,
)
JOBS_FINISHED = Counter(
    "chestaid_jobs_finished", "Jobs this process's workers ended, by final state", ["state"]
)
DELIVERY_ATTEMPTS = Counter(
    "chestaid_delivery_attempts",
    "Delivery attempts of this process's sender, by destination and outcome",
    ["destination", "outcome"],
)
REPORTS = Counter(
    "chestaid_hl7_reports",
    "HL7 messages this process's report listener answered, by what became of them",
    ["outcome"],
)
DELIVERY_LATENCY = Histogram(
    "chestaid_delivery_seconds",
    "Time from an image's receipt to the delivery of one of its outputs (each output and destination)",
    buckets=LATENCY_BUCKETS,
)

# The statuses the SCP answers (daemon.scp), shown from zero.
for _status in (0x0000, 0x0122, 0xA700, 0xA900, 0xC210, 0xC212):
    CSTORE.labels(status=f"0x{_status:04X}")
for _state in (JobState.DONE, JobState.SKIPPED, JobState.FAILED):
    JOBS_FINISHED.labels(state=_state.value)


def count_store(answer: int | Dataset) -> None:
    """Count one C-STORE answer (a status code, or a response dataset carrying one)."""
    status = answer if isinstance(answer, int) else int(answer.get("Status", -1))
    CSTORE.labels(status=f"0x{status & 0xFFFF:04X}" if status >= 0 else "none").inc()


def seconds_since(then: datetime | None) -> float | None:
    """Seconds from ``then`` (a stored UTC time) to now; None when unknown."""
    return None if then is None else max(0.0, (utcnow() - then).total_seconds())


def observe_since(histogram: Histogram, then: datetime | None) -> None:
    """Observe the seconds since ``then`` in ``histogram`` (nothing when unknown)."""
    elapsed = seconds_since(then)
    if elapsed is not None:
        histogram.observe(elapsed)


class Collector(Protocol):
    """What prometheus_client asks of a source of metrics."""

    def collect(self) -> Iterable[Metric]: ...


# States counted at each scrape: those a healthy node keeps small, so each count is a
# short range of an index (ix_jobs_state_id, ix_deliveries_state_due). The states that
# grow for ever (done, skipped, delivered) would cost a scan of years of rows; their
# rates come from the counters above (chestaid_jobs_finished, chestaid_delivery_attempts).
SCRAPED_JOB_STATES = (JobState.QUEUED, JobState.RUNNING, JobState.FAILED)
SCRAPED_DELIVERY_STATES = (DeliveryState.PENDING, DeliveryState.SENDING, DeliveryState.DEAD)


class DatabaseCollector:
    """The queue, the outbox and the model in service, read at each scrape.

    Jobs and deliveries are counted in their open and failed states only (see
    :data:`SCRAPED_JOB_STATES`), each an indexed range: a scrape costs the same with
    years of finished work. A database that cannot be read gives
    ``chestaid_database_up 0`` and no counts, rather than a failed scrape.
    """

    def __init__(self, sessions: SessionFactory, serving: Serving | None = None) -> None:
        self.sessions = sessions
        self.serving = serving

    def collect(self) -> Iterator[Metric]:
        """The gauges, read now."""
        up = GaugeMetricFamily("chestaid_database_up", "Whether the database could be read")
        try:
            with reading(self.sessions) as session:
                jobs = {s: _count(session, Job, Job.state == s) for s in SCRAPED_JOB_STATES}
                deliveries = {
                    s: _count(session, Delivery, Delivery.state == s)
                    for s in SCRAPED_DELIVERY_STATES
                }
                oldest = session.scalar(
                    select(Job.created_at)
                    .where(Job.state == JobState.QUEUED)
                    .order_by(Job.id)
                    .limit(1)
                )
        except SQLAlchemyError as exc:
            logger.warning("metrics: the database cannot be read", extra={"error": str(exc)})
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        queue = GaugeMetricFamily(
            "chestaid_jobs", "Jobs queued, running and failed (the queue)", labels=["state"]
        )
        for job_state, n in jobs.items():
            queue.add_metric([job_state.value], n)
        yield queue
        age = GaugeMetricFamily(
            "chestaid_oldest_queued_job_seconds", "Age of the oldest queued job (0: none)"
        )
        age.add_metric([], seconds_since(oldest) or 0.0)
        yield age
        outbox = GaugeMetricFamily(
            "chestaid_deliveries", "Deliveries pending, sending and dead", labels=["state"]
        )
        for delivery_state, n in deliveries.items():
            outbox.add_metric([delivery_state.value], n)
        yield outbox
        yield from self._model()

    def _model(self) -> Iterator[Metric]:
        if self.serving is None:
            return
        try:
            current = self.serving.current()
        except (BundleError, SQLAlchemyError) as exc:
            logger.warning("metrics: the model in service is unknown", extra={"error": str(exc)})
            return
        info = InfoMetricFamily("chestaid_model", "The model and calibration in service")
        info.add_metric(
            [],
            {
                "model_version": current.model_version,
                "calibration_version": str(current.calibration_version),
                "local_calibration": "true" if current.local else "false",
            },
        )
        yield info
        version = GaugeMetricFamily(
            "chestaid_calibration_version", "The calibration version in service"
        )
        version.add_metric([], current.calibration_version)
        yield version
        threshold = GaugeMetricFamily(
            "chestaid_threshold", "The governed threshold of the calibration in service"
        )
        threshold.add_metric([], current.threshold)
        yield threshold


def _count(session: Session, table: type[Job] | type[Delivery], where: ColumnElement[bool]) -> int:
    return int(session.scalar(select(func.count()).select_from(table).where(where)) or 0)


class Exported:
    """Everything a process exports: its own metrics and, if any, the database gauges."""

    def __init__(self, *collectors: Collector) -> None:
        self.collectors = (REGISTRY, *collectors)

    def collect(self) -> Iterator[Metric]:
        """Every metric of every source."""
        for collector in self.collectors:
            yield from collector.collect()

    def exposition(self) -> bytes:
        """The metrics in Prometheus's text format."""
        return generate_latest(self)


def exported(
    settings: MetricsSettings, sessions: SessionFactory, serving: Serving | None
) -> Exported:
    """What this process exports, as the settings ask."""
    if settings.database_gauges:
        return Exported(DatabaseCollector(sessions, serving))
    return Exported()


def read_token(path: Path | None) -> str | None:
    """The bearer token Prometheus presents for ``/metrics``, from its file.

    Raises:
        ConfigurationError: the file cannot be read, or holds fewer than 16 characters.
    """
    if path is None:
        return None
    try:
        token = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"metrics.token_file {path} cannot be read: {exc}") from exc
    if len(token) < 16:
        raise ConfigurationError(
            f"metrics.token_file {path} holds fewer than 16 characters; use a long random "
            "token (e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))')"
        )
    return token


def token_matches(expected: str | None, presented: str | None) -> bool:
    """Whether a presented bearer token is the metrics token (in constant time)."""
    if expected is None or not presented:
        return False
    return secrets.compare_digest(expected.encode(), presented.encode())


class Listener:
    """This process's own metrics on ``host:port`` (prometheus_client's HTTP server).

    Raises:
        OSError: the port cannot be bound.
        ConfigurationError: the TLS files cannot be used.
    """

    def __init__(self, settings: MetricsSettings, source: Exported) -> None:
        tls = settings.tls_certificate is not None
        try:
            self._server, self._thread = start_http_server(
                settings.port,
                addr=settings.host,
                registry=source,
                certfile=str(settings.tls_certificate) if tls else None,
                keyfile=str(settings.tls_key) if tls else None,
                client_cafile=str(settings.client_ca_file) if settings.client_ca_file else None,
                client_auth_required=settings.client_ca_file is not None,
                tls_min_version=ssl.TLSVersion.TLSv1_2 if tls else None,
            )
        except OSError as exc:
            raise OSError(
                exc.errno,
                f"metrics cannot listen on {settings.host}:{settings.port}: {exc.strerror}",
            ) from exc
        except ssl.SSLError as exc:
            raise ConfigurationError(f"metrics TLS files cannot be used: {exc}") from exc
        self.address = f"{settings.host}:{self._server.server_port}"
        logger.info(
            "metrics listening", extra={"address": self.address, "tls": tls, "path": "/metrics"}
        )

    @property
    def alive(self) -> bool:
        """Whether the listener's thread runs."""
        return self._thread.is_alive()

    def stop(self) -> None:
        """Stop listening and close the socket."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
