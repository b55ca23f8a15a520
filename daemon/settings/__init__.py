"""The daemon's settings: one validated object, from a TOML file with ``CHESTAID_`` overrides.

The embedded default is ``config/chestaid.toml`` (AE title CHESTAID on 127.0.0.1:11112,
SQLite in WAL mode under ``./var/``, the bundled model). A site copies it, edits it,
and passes it with ``--config``. Any key can be overridden from the environment:
``CHESTAID_NODE__PORT=11113``, ``CHESTAID_STORAGE__DATABASE_URL=...``; lists and
tables take JSON, e.g. ``CHESTAID_ALLOW__NETWORKS='["10.0.0.0/8"]'``.

Loading fails at start with :class:`~chestaid.errors.ConfigurationError` naming each
bad key; unknown keys are refused, so a typo never passes silently.
"""

from __future__ import annotations

import ipaddress
import string
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    Field,
    FilePath,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from chestaid.calibration.guardrails import HARD_FLOORS
from chestaid.errors import ConfigurationError
from daemon.settings.base import (
    AETitle,
    AllowedNetworks,
    Port,
    Seconds,
    Section,
    is_loopback,
    valid_networks,
)
from daemon.settings.destinations import (
    AUTH_TYPES,
    DESTINATION_KINDS,
    EVERY_OUTPUT,
    AnyDestination,
    BasicAuth,
    BearerAuth,
    Destination,
    DestinationName,
    DestinationTLS,
    DicomWebDestination,
    Hl7Destination,
    Hl7Name,
)

__all__ = [
    "AUTH_TYPES",
    "DESTINATION_KINDS",
    "EVERY_OUTPUT",
    "AETitle",
    "AnyDestination",
    "BasicAuth",
    "BearerAuth",
    "Destination",
    "DestinationName",
    "DestinationTLS",
    "DicomWebDestination",
    "Hl7Destination",
    "Hl7Name",
    "Port",
    "Seconds",
    "Section",
]

DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "config" / "chestaid.toml"
ENV_PREFIX = "CHESTAID_"

VIEWER_FIELDS = frozenset({"study_instance_uid", "accession_number"})


def _viewer_template(value: str) -> str:
    """The template unchanged when it is empty or an http(s) URL naming known fields."""
    if not value.strip():
        return ""
    try:
        names = {name for _, name, _, _ in string.Formatter().parse(value) if name is not None}
    except ValueError as exc:
        raise ValueError(f"unbalanced braces in the viewer URL template: {exc}") from exc
    unknown = names - VIEWER_FIELDS
    if unknown or not names:
        raise ValueError(
            "the viewer URL template must name {study_instance_uid} or {accession_number}"
            + (f" and nothing else (found {sorted(unknown)})" if unknown else "")
        )
    scheme = urlsplit(value.format(study_instance_uid="x", accession_number="x")).scheme
    if scheme.lower() not in ("http", "https"):
        raise ValueError(f"the viewer URL must be http or https, not {scheme or 'relative'!r}")
    return value


class SiteSettings(Section):
    """How the site runs ChestAid: ``live``, or ``shadow`` for a silent trial period.

    In shadow mode every received image is scored, its result stored (marked as made
    in shadow), its Secondary Capture and SR built into the outbox (to inspect what
    would have been sent) and monitoring runs as usual, but nothing is sent: no
    delivery is created for any destination (DICOM, DICOMweb or HL7), and the sender
    does not start. The worklist says "shadow", and the admin's report compares the
    shadow results with the labels that arrive, so a site sees its own sensitivity and
    specificity before going live.

    Going live later sends only what is scored from then on: results made in shadow
    never had deliveries, so the shadow period's backlog is never sent.
    """

    mode: Literal["live", "shadow"] = "live"

    @property
    def shadow(self) -> bool:
        """Whether results are kept here and sent nowhere."""
        return self.mode == "shadow"


class NodeTLS(Section):
    """TLS on the node's port: DICOM's non-downgrading BCP 195 profile (TLS 1.2 or later).

    With ``client_ca_file`` a client's certificate is asked for and verified against
    those CAs (mutual TLS); ``require_client_certificate`` refuses clients without one.
    """

    certificate: FilePath  # PEM, the node's certificate (and any intermediates after it)
    key: FilePath  # PEM, unencrypted: the daemon starts unattended
    client_ca_file: FilePath | None = None
    require_client_certificate: bool = False

    @model_validator(mode="after")
    def _ca_for_required(self) -> NodeTLS:
        if self.require_client_certificate and self.client_ca_file is None:
            raise ValueError(
                "require_client_certificate needs client_ca_file "
                "(the CAs that sign the clients' certificates)"
            )
        return self


class NodeSettings(Section):
    """ChestAid's own DICOM node: where it listens and how patient it is."""

    ae_title: AETitle = "CHESTAID"
    host: str = "127.0.0.1"
    port: Port = 11112
    max_associations: Annotated[int, Field(ge=1, le=1000)] = 8
    # Never unlimited (0): a peer could otherwise announce PDUs of any size.
    max_pdu_bytes: Annotated[int, Field(ge=4096, le=64 * 1024 * 1024)] = 4 * 1024 * 1024
    acse_timeout: Seconds = 30.0
    dimse_timeout: Seconds = 60.0
    network_timeout: Seconds = 60.0
    tls: NodeTLS | None = None  # plain DICOM on the port when absent
    # How many connections one peer address may hold at once (default: half of
    # max_associations), so one host cannot lock every modality out.
    max_associations_per_address: Annotated[int, Field(ge=1, le=1000)] | None = None

    @model_validator(mode="after")
    def _per_address_within_total(self) -> NodeSettings:
        per_address = self.max_associations_per_address
        if per_address is not None and per_address > self.max_associations:
            raise ValueError(
                f"max_associations_per_address ({per_address}) is more than "
                f"max_associations ({self.max_associations})"
            )
        return self

    @property
    def per_address_limit(self) -> int:
        """The connections one peer address may hold at once."""
        if self.max_associations_per_address is not None:
            return self.max_associations_per_address
        return max(1, self.max_associations // 2)


class AllowSettings(AllowedNetworks):
    """Who may associate: calling AE titles (empty: any) and source networks."""

    calling_ae_titles: list[AETitle] = Field(default_factory=list)


class StorageSettings(Section):
    """Where received images, outputs and the database live (relative to the working dir)."""

    var_dir: Path = Path("var")
    spool_dir: Path | None = None  # default: <var_dir>/spool
    outbox_dir: Path | None = None  # default: <var_dir>/outbox
    database_url: str | None = None  # default: sqlite:///<var_dir>/chestaid.db
    # Refuse new images (0xA700) when the spool's file system would have less than this.
    min_free_mb: Annotated[int, Field(ge=0)] = 512
    database_busy_timeout: Seconds = 10.0

    @property
    def spool(self) -> Path:
        """The spool directory."""
        return self.spool_dir if self.spool_dir is not None else self.var_dir / "spool"

    @property
    def outbox(self) -> Path:
        """The outbox directory (generated objects waiting for, or kept after, delivery)."""
        return self.outbox_dir if self.outbox_dir is not None else self.var_dir / "outbox"

    @property
    def url(self) -> str:
        """The SQLAlchemy database URL."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.var_dir / 'chestaid.db'}"


class ModelSettings(Section):
    """The model bundle and how it runs."""

    bundle: Path | None = None  # default: the bundled model named by ``builtin``
    # Which bundled model serves when no bundle is named: "pneumonia" (the default) or
    # "findings" (COVID-19, viral and bacterial pneumonia, normal; its triage score is
    # the probability of "not normal", each class's probability in the SR).
    builtin: Literal["pneumonia", "findings"] = "pneumonia"
    device: str = "cpu"
    threads: Annotated[int, Field(ge=0, le=256)] = 0  # 0: PyTorch's default
    # What runs the network (chestaid.runtimes): "auto" measures the runtimes installed
    # here at start and uses the fastest that agrees with PyTorch float32; bfloat16 is
    # only ever used where the CPU has it natively.
    runtime: Literal["auto", "torch", "openvino", "onnxruntime"] = "auto"
    precision: Literal["auto", "f32", "bf16"] = "auto"
    runtime_cache: Path | None = None  # where OpenVINO may keep compiled networks


class WorkerSettings(Section):
    """Scoring workers: how many, how long a claim lasts, how often to look for work."""

    count: Annotated[int, Field(ge=1, le=64)] = 1
    lease_seconds: Seconds = 120.0
    poll_seconds: Seconds = 2.0
    # A job whose processing raised an unexpected error this many times is failed.
    max_attempts: Annotated[int, Field(ge=1, le=100)] = 3
    # Storage or database trouble (the outbox full, the database busy) is not the
    # image's fault and usually passes: it is retried after a pause doubling from
    # retry_initial_seconds up to retry_max_seconds, up to retry_max_attempts claims
    # (over an hour by default) before the job fails.
    retry_initial_seconds: Seconds = 30.0
    retry_max_seconds: Seconds = 600.0
    retry_max_attempts: Annotated[int, Field(ge=1, le=1000)] = 12
    # Scoring runs at this nice value (0..19) so receiving wins the CPU in a burst.
    nice: Annotated[int, Field(ge=0, le=19)] = 10
    # Before each job, wait up to this long for associations in progress to end
    # (in-process SCP only), so a burst is received at full speed; 0 disables.
    yield_to_intake_seconds: Annotated[float, Field(ge=0, le=60)] = 2.0
    max_pixels: Annotated[int, Field(ge=1)] = 40_000_000
    # A study's report (its SR, and so its HL7 message) is issued once no image of the
    # study has come for this long and none is waiting to be scored; 0 issues at once.
    study_settle_seconds: Annotated[float, Field(ge=0, le=3600)] = 10.0
    output_max_side: Annotated[int, Field(ge=128, le=8192)] = 1024
    overlay_alpha: Annotated[float, Field(ge=0.0, le=1.0)] = 0.35


class Band(Section):
    """A priority band: studies whose calibrated score is at least ``min_score``.

    ``min_score = "threshold"`` means the governed threshold of the active calibration.
    """

    name: Annotated[str, StringConstraints(pattern=r"^[A-Z][A-Z0-9_]{0,15}$")]
    min_score: float | Literal["threshold"]

    @field_validator("min_score")
    @classmethod
    def _in_unit_range(cls, value: float | str) -> float | str:
        if isinstance(value, float) and not 0.0 <= value <= 1.0:
            raise ValueError('must be in [0, 1] or "threshold"')
        return value


def _default_bands() -> list[Band]:
    return [Band(name="URGENT", min_score="threshold"), Band(name="ROUTINE", min_score=0.0)]


class PrioritySettings(Section):
    """Priority bands, highest first. There must be one at the threshold and one at 0."""

    bands: list[Band] = Field(default_factory=_default_bands)

    @field_validator("bands")
    @classmethod
    def _usable(cls, bands: list[Band]) -> list[Band]:
        names = [b.name for b in bands]
        if len(set(names)) != len(names):
            raise ValueError("band names must be unique")
        if not any(b.min_score == "threshold" for b in bands):
            raise ValueError('one band must have min_score = "threshold" (the governed threshold)')
        if not any(b.min_score == 0.0 for b in bands):
            raise ValueError("one band must have min_score = 0 so every score has a band")
        return bands


class SenderSettings(Section):
    """Delivery of outputs: retries with exponential backoff, then a dead letter."""

    calling_ae_title: AETitle | None = None  # default: node.ae_title
    max_attempts: Annotated[int, Field(ge=1, le=1000)] = 12
    backoff_initial_seconds: Seconds = 5.0
    backoff_max_seconds: Seconds = 300.0
    poll_seconds: Seconds = 5.0
    lease_seconds: Seconds = 300.0
    batch_size: Annotated[int, Field(ge=1, le=1000)] = 50


class SchedulerSettings(Section):
    """Periodic maintenance jobs."""

    queue_report_seconds: Seconds = 300.0


class WorklistSettings(Section):
    """The reading worklist."""

    # A study waiting longer than this goes to the top (oldest first), whatever its
    # score, so routine studies are never starved by a stream of urgent ones.
    max_wait_minutes: Annotated[float, Field(gt=0, le=10_080)] = 120.0
    # How a study leaves the open list besides being read here (which always takes it
    # off): reported read elsewhere (``chestaid-daemon studies close --reason
    # reported-elsewhere``, later an HL7 feed) when true; and, when above 0, after this
    # many hours open (for a site that reads in its PACS and never marks reads here).
    close_reported_elsewhere: bool = True
    close_after_hours: Annotated[float, Field(ge=0, le=87_600)] = 0.0
    # How long after a read (explicit or by feedback) the reader, or an admin, may undo
    # it and put the study back on the worklist.
    undo_minutes: Annotated[float, Field(ge=0, le=1440)] = 10.0


class MonitoringSettings(Section):
    """The monitoring job: rolling windows, when to alert, where to send alerts."""

    interval_minutes: Annotated[float, Field(gt=0, le=10_080)] = 60.0
    windows_days: list[Annotated[int, Field(ge=1, le=365)]] = Field(default_factory=lambda: [7, 30])
    # Performance alerts need at least this many labelled positive (sensitivity) or
    # flagged (PPV) studies in the window.
    min_labelled: Annotated[int, Field(ge=1)] = 30
    ppv_floor: Annotated[float, Field(ge=0, le=1)] | None = None
    # Label-free drift: PSI of the window's logits, and of each image's mean and
    # standard deviation, against the site's first ``reference_studies`` scored
    # studies, alerting from ``psi_alert``.
    reference_studies: Annotated[int, Field(ge=20)] = 200
    psi_alert: Annotated[float, Field(gt=0)] = 0.25
    # Drift is judged only with this many results in the window: with fewer, a 10-bin
    # PSI of two samples of the same distribution often passes 0.25 by chance alone
    # (about 8% of the time at 100, 0.5% at 200, against a reference of 200).
    min_window_results: Annotated[int, Field(ge=20)] = 200
    webhook_url: str | None = None  # a JSON POST per alert; none by default
    # Retention: spooled images and generated outputs older than this are deleted
    # (the database keeps the rows, without the pixels). 0 keeps them for ever.
    retention_days: Annotated[int, Field(ge=0, le=36_500)] = 30


class CalibrationSettings(Section):
    """Local recalibration: the cases a fit needs, and the preview before activation.

    The minimums may be raised, never set below the hard floors of
    :mod:`chestaid.calibration.guardrails` (100 cases, 20 of each class).
    """

    min_cases: Annotated[int, Field(ge=HARD_FLOORS.cases, le=1_000_000)] = HARD_FLOORS.cases
    min_positives: Annotated[int, Field(ge=HARD_FLOORS.positives)] = HARD_FLOORS.positives
    min_negatives: Annotated[int, Field(ge=HARD_FLOORS.negatives)] = HARD_FLOORS.negatives
    # The preview re-scores the studies scored in this many days before activation.
    preview_days: Annotated[int, Field(ge=1, le=365)] = 30


class WebSettings(Section):
    """The web interface and JSON API (the ``web`` role)."""

    host: str = "127.0.0.1"
    port: Port = 8180
    # Serve HTTPS directly; beyond loopback either this or a TLS reverse proxy that
    # listens on the network and forwards to a loopback ``host`` is required.
    tls_certificate: Path | None = None
    tls_key: Path | None = None
    # Cookies are marked Secure: browsers send them only over HTTPS or to localhost.
    secure_cookies: bool = True
    session_idle_minutes: Annotated[float, Field(gt=0, le=1440)] = 30.0
    session_max_hours: Annotated[float, Field(gt=0, le=168)] = 12.0
    api_token_days: Annotated[float, Field(gt=0, le=365)] = 30.0
    # Login rate limiting: after this many failures from one address, or
    # login_max_failures_per_user for one user name from any address, within the
    # window, further attempts are refused until it passes. The per-name limit is
    # higher so that one address guessing a colleague's name cannot lock them out.
    login_max_failures: Annotated[int, Field(ge=1, le=1000)] = 5
    login_max_failures_per_user: Annotated[int, Field(ge=1, le=10_000)] = 20
    login_window_minutes: Annotated[float, Field(gt=0, le=1440)] = 15.0
    min_password_length: Annotated[int, Field(ge=8, le=128)] = 12
    # The least zxcvbn strength score (0-4) a chosen password needs; below 2 is not allowed.
    min_password_score: Annotated[int, Field(ge=2, le=4)] = 3
    worklist_refresh_seconds: Annotated[int, Field(ge=5, le=3600)] = 15
    worklist_rows: Annotated[int, Field(ge=10, le=500)] = 200  # rows per worklist page
    upload_max_mb: Annotated[int, Field(ge=1, le=1024)] = 64
    # An upload whose header declares more decoded bytes than this (pixels x channels x
    # bytes per sample) is refused (413) before decoding: a small, highly compressed file
    # can declare hundreds of MiB. 160 MiB takes a 40-megapixel RGBA image of 8 bits.
    upload_max_decoded_mb: Annotated[int, Field(ge=8, le=2048)] = 160
    # Reverse proxies (CIDR) whose X-Forwarded-For is believed. Without this, behind a
    # proxy every user has the proxy's address, and the per-address sign-in limit
    # would lock everyone out together.
    trusted_proxies: list[str] = Field(default_factory=list)
    # A link that opens a study in the site's PACS viewer: an http(s) URL naming
    # {study_instance_uid} or {accession_number}; empty for no link.
    viewer_url_template: Annotated[str, Field(max_length=2000)] = ""
    # Times on the pages are shown in this IANA time zone (e.g. "Europe/Berlin").
    time_zone: Annotated[str, Field(min_length=1, max_length=64)] = "UTC"

    @field_validator("trusted_proxies")
    @classmethod
    def _valid_proxies(cls, value: list[str]) -> list[str]:
        return valid_networks(value)

    @field_validator("viewer_url_template")
    @classmethod
    def _valid_viewer_url(cls, value: str) -> str:
        return _viewer_template(value)

    @field_validator("time_zone")
    @classmethod
    def _valid_time_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"{value!r} is not an IANA time zone (e.g. Europe/Berlin)") from exc
        return value

    @model_validator(mode="after")
    def _tls_beyond_loopback(self) -> WebSettings:
        if (self.tls_certificate is None) != (self.tls_key is None):
            raise ValueError("tls_certificate and tls_key go together")
        try:
            loopback = ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            loopback = self.host == "localhost"
        if not loopback and self.tls_certificate is None:
            raise ValueError(
                f"serving the web interface on {self.host} needs tls_certificate and tls_key "
                "(or keep host on loopback behind a TLS reverse proxy): passwords and "
                "session cookies must not cross the network in clear"
            )
        return self

    @property
    def https(self) -> bool:
        """Whether the web role serves HTTPS itself."""
        return self.tls_certificate is not None


class ReportListenerSettings(AllowedNetworks):
    """The HL7 listener (role ``hl7``) that takes final reports from the RIS over MLLP.

    Off unless enabled. Only senders from ``networks`` may connect, and, when
    ``sending_applications`` names any, only messages whose MSH-3 is one of them are
    taken. With ``tls`` the listener speaks MLLP in TLS (the node's certificate rules).
    """

    enabled: bool = False
    host: str = "127.0.0.1"
    port: Port = 2575
    sending_applications: list[Hl7Name] = Field(default_factory=list)
    tls: NodeTLS | None = None
    max_message_kb: Annotated[int, Field(ge=4, le=65_536)] = 1024
    max_connections: Annotated[int, Field(ge=1, le=1000)] = 16
    idle_timeout_seconds: Seconds = 300.0  # a connection that sends nothing this long is closed


class MetricsSettings(Section):
    """Prometheus metrics: ``/metrics`` on the web role, and each process's own listener.

    ``/metrics`` on the web interface answers a signed-in admin, or a bearer token equal
    to the contents of ``token_file`` (what Prometheus presents); nobody else. With
    ``listen``, every daemon process also serves its own metrics on ``host:port`` (roles
    split over processes: each process counts its own work). That listener has no
    passwords, so beyond loopback it must use mutual TLS (``tls_certificate``,
    ``tls_key`` and ``client_ca_file``, the CAs of the scrapers' client certificates).
    """

    enabled: bool = True
    token_file: FilePath | None = None
    listen: bool = False
    host: str = "127.0.0.1"
    port: Port = 9464
    tls_certificate: FilePath | None = None
    tls_key: FilePath | None = None
    client_ca_file: FilePath | None = None
    # Queue, delivery and model gauges are read from the database at each scrape; with
    # roles split, one process exporting them is enough (they are the same everywhere).
    database_gauges: bool = True

    @model_validator(mode="after")
    def _protected_beyond_loopback(self) -> MetricsSettings:
        if (self.tls_certificate is None) != (self.tls_key is None):
            raise ValueError("tls_certificate and tls_key go together")
        if self.client_ca_file is not None and self.tls_certificate is None:
            raise ValueError("client_ca_file needs tls_certificate and tls_key")
        if self.listen and not is_loopback(self.host) and self.client_ca_file is None:
            raise ValueError(
                f"a metrics listener on {self.host} needs mutual TLS (tls_certificate, "
                "tls_key and client_ca_file), or keep host on loopback: it has no other "
                "protection"
            )
        return self


class LoggingSettings(Section):
    """Logs go to standard error (the journal under systemd)."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["json", "text"] = "json"


class Settings(BaseSettings):
    """Every setting of the daemon, validated."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid", frozen=True
    )

    site: SiteSettings = Field(default_factory=SiteSettings)
    node: NodeSettings = Field(default_factory=NodeSettings)
    allow: AllowSettings = Field(default_factory=AllowSettings)
    storage: StorageSettings = Field(default_factory=StorageSettings)
    model: ModelSettings = Field(default_factory=ModelSettings)
    worker: WorkerSettings = Field(default_factory=WorkerSettings)
    priority: PrioritySettings = Field(default_factory=PrioritySettings)
    destinations: list[AnyDestination] = Field(default_factory=list)
    sender: SenderSettings = Field(default_factory=SenderSettings)
    scheduler: SchedulerSettings = Field(default_factory=SchedulerSettings)
    worklist: WorklistSettings = Field(default_factory=WorklistSettings)
    monitoring: MonitoringSettings = Field(default_factory=MonitoringSettings)
    calibration: CalibrationSettings = Field(default_factory=CalibrationSettings)
    web: WebSettings = Field(default_factory=WebSettings)
    hl7_listener: ReportListenerSettings = Field(default_factory=ReportListenerSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    logging: LoggingSettings = Field(default_factory=LoggingSettings)

    @field_validator("destinations", mode="before")
    @classmethod
    def _dicom_by_default(cls, value: Any) -> Any:
        # A table without ``kind`` is a DICOM node (files written before other kinds).
        if isinstance(value, list):
            return [
                {"kind": "dicom", **item} if isinstance(item, dict) and "kind" not in item else item
                for item in value
            ]
        return value

    @model_validator(mode="after")
    def _unique_destinations(self) -> Settings:
        names = [d.name for d in self.destinations]
        if len(set(names)) != len(names):
            raise ValueError("destination names must be unique")
        bands = {b.name for b in self.priority.bands}
        for destination in self.destinations:
            unknown = sorted(set(getattr(destination, "raising_bands", ())) - bands)
            if unknown:
                raise ValueError(
                    f"destinations[{destination.name}].raising_bands names no priority band: "
                    f"{', '.join(unknown)} (the bands: {', '.join(sorted(bands))})"
                )
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The environment overrides the file (passed in as init values).
        return env_settings, init_settings


def _key(loc: tuple[int | str, ...], kind: str = "") -> str:
    """The settings key of a validation error's location, as the file writes it.

    A destination's kind is part of pydantic's location (``destinations.0.dicomweb.url``)
    but not of the file's key, so it is left out; an unknown kind is the ``kind`` key.
    """
    if len(loc) > 2 and loc[0] == "destinations" and loc[2] in DESTINATION_KINDS:
        loc = (*loc[:2], *loc[3:])
    if len(loc) > 3 and loc[2] == "auth" and loc[3] in AUTH_TYPES:
        loc = (*loc[:3], *loc[4:])
    if kind.startswith("union_tag") and loc[:1] == ("destinations",):
        loc = (*loc, "type" if "auth" in loc else "kind")
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        else:
            parts.append(("." if parts else "") + item)
    return "".join(parts) or "(top level)"


def load_settings(path: str | Path | None = None) -> Settings:
    """Load and validate the settings.

    Args:
        path: a TOML file; the embedded default when None.

    Raises:
        ConfigurationError: the file is missing or not TOML, or a key is unknown or
            has a bad value; the message names the file and every bad key.
    """
    source = Path(path) if path is not None else DEFAULT_CONFIG
    if path is None and not source.exists():
        # An installed package without the source tree: the built-in defaults equal the file.
        return _validated({}, source)
    try:
        data: dict[str, Any] = tomllib.loads(source.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigurationError(f"configuration file {source} does not exist") from exc
    except OSError as exc:
        raise ConfigurationError(f"configuration file {source} cannot be read: {exc}") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"configuration file {source} is not valid TOML: {exc}") from exc
    return _validated(data, source)


def _validated(data: dict[str, Any], source: Path) -> Settings:
    """Validate file data (with environment overrides) into settings."""
    try:
        return Settings(**data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{_key(err['loc'], err['type'])}: {err['msg']}"
            + (
                f" (got {err['input']!r})"
                if err["type"] != "missing" and not isinstance(err["input"], dict)
                else ""
            )
            for err in exc.errors()
        )
        raise ConfigurationError(
            f"bad configuration in {source} or {ENV_PREFIX}* environment: {problems}"
        ) from exc
