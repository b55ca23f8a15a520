"""The database's tables, as typed ORM models. Alembic (``migrations/``) owns the schema.

The way of one instance through the tables:

    instances  one row per received SOP instance (first copy wins), its spool file
    jobs       one per instance: queued -> running -> done | skipped | failed
    results    one per done job: logit, calibrated score, priority, versions; or the
               image was not assessable (its reason, no priority, the score for audit);
               whether it was made in shadow mode (then it has no deliveries)
    outputs    the objects a result produced (Secondary Capture, SR), in the outbox
    deliveries one per output per destination: pending -> sending -> delivered | dead
    studies    one per Study Instance UID: what the worklist sorts and shows, kept up to
               date as images are received and scored, and whether it left the list

Only ``studies`` holds identifying fields (patient name and ID, accession number and
the like, read from the header at receipt), and only until retention blanks them.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    SmallInteger,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
    true,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

UID_LENGTH = 64


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored as UTC and always read back timezone-aware (SQLite keeps no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored; use timezone-aware UTC")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    """Declarative base of ChestAid's tables."""


class JobState(enum.StrEnum):
    """Where a job is. ``done``, ``skipped`` and ``failed`` are terminal."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    SKIPPED = "skipped"
    FAILED = "failed"


class DeliveryState(enum.StrEnum):
    """Where a delivery is. ``delivered`` is terminal; ``dead`` waits for an admin's retry."""

    PENDING = "pending"
    SENDING = "sending"
    DELIVERED = "delivered"
    DEAD = "dead"


class OutputKind(enum.StrEnum):
    """What a generated object is."""

    SECONDARY_CAPTURE = "sc"
    STRUCTURED_REPORT = "sr"


def _enum(cls: type[enum.StrEnum], name: str) -> Enum:
    return Enum(
        cls,
        name=name,
        native_enum=False,
        create_constraint=True,
        length=16,
        values_callable=lambda e: [m.value for m in e],
    )


class Instance(Base):
    """A received SOP instance and where its bytes are in the spool."""

    __tablename__ = "instances"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sop_instance_uid: Mapped[str] = mapped_column(String(UID_LENGTH), unique=True)
    sop_class_uid: Mapped[str] = mapped_column(String(UID_LENGTH))
    study_instance_uid: Mapped[str] = mapped_column(String(UID_LENGTH), index=True)
    series_instance_uid: Mapped[str] = mapped_column(String(UID_LENGTH))
    transfer_syntax_uid: Mapped[str] = mapped_column(String(UID_LENGTH))
    modality: Mapped[str | None] = mapped_column(String(16))
    # The file's name relative to the spool directory; made by ChestAid, never from UIDs.
    spool_name: Mapped[str | None] = mapped_column(String(255))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    calling_ae_title: Mapped[str] = mapped_column(String(16))
    peer_address: Mapped[str] = mapped_column(String(64))
    # The C-STORE request's priority (LOW, MEDIUM, HIGH): the sender's own urgency.
    requested_priority: Mapped[str] = mapped_column(String(8))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    job: Mapped[Job] = relationship(back_populates="instance", uselist=False)


class Job(Base):
    """The work of scoring one instance."""

    __tablename__ = "jobs"
    __table_args__ = (Index("ix_jobs_state_id", "state", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    instance_id: Mapped[int] = mapped_column(ForeignKey("instances.id"), unique=True)
    state: Mapped[JobState] = mapped_column(_enum(JobState, "job_state"), default=JobState.QUEUED)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    lease_owner: Mapped[str | None] = mapped_column(String(128))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    instance: Mapped[Instance] = relationship(back_populates="job")
    result: Mapped[Result | None] = relationship(back_populates="job", uselist=False)
    outputs: Mapped[list[Output]] = relationship(back_populates="job")


# A result is either assessable, with a priority band, or not assessable, with its
# reason and no band (and never above the threshold): the database refuses a mix.
RESULT_OUTCOME_CHECK = (
    "(assessable AND priority IS NOT NULL AND not_assessable_reason IS NULL) OR "
    "(NOT assessable AND priority IS NULL AND not_assessable_reason IS NOT NULL "
    "AND NOT above_threshold)"
)


class Result(Base):
    """What the model said about an instance, with the versions that said it.

    When the image was not assessable (not a judgeable frontal chest radiograph),
    ``assessable`` is false, the reason (a stable code of ``chestaid.assessment``)
    and its sentence are kept, there is no priority band, and the logit and score
    are kept for audit only: no worklist band, report or drift figure uses them.
    """

    __tablename__ = "results"
    __table_args__ = (CheckConstraint(RESULT_OUTCOME_CHECK, name="ck_results_outcome"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"), unique=True)
    logit: Mapped[float] = mapped_column(Float)
    score: Mapped[float] = mapped_column(Float)
    threshold: Mapped[float] = mapped_column(Float)
    above_threshold: Mapped[bool] = mapped_column(Boolean)
    priority: Mapped[str | None] = mapped_column(String(16))  # None: not assessable
    assessable: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    not_assessable_reason: Mapped[str | None] = mapped_column(String(16))
    not_assessable_detail: Mapped[str | None] = mapped_column(Text)
    # Counter-clockwise quarter turns the image was given before it was scored (an
    # image received on its side, turned upright when its orientation was certain).
    quarter_turns: Mapped[int] = mapped_column(SmallInteger, default=0, server_default="0")
    model_version: Mapped[str] = mapped_column(String(128))
    calibration_version: Mapped[int] = mapped_column(Integer)
    scored_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # The Grad-CAM map at feature-map resolution (JSON rows of 0..1 values), so the
    # study page can show it without running the model again.
    cam: Mapped[str | None] = mapped_column(Text)
    # Simple statistics of the decoded image (0..1 grey), for label-free drift.
    image_mean: Mapped[float | None] = mapped_column(Float)
    image_std: Mapped[float | None] = mapped_column(Float)
    image_rows: Mapped[int | None] = mapped_column(Integer)
    image_cols: Mapped[int | None] = mapped_column(Integer)
    # Made while the site ran in shadow mode (``[site] mode``): scored and kept, sent
    # nowhere; no delivery was created for it, so going live never sends it.
    shadow: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # An N-class bundle's calibrated probability of each class, as a JSON list of
    # [name, probability] pairs in the bundle's order (migration 0013); None for a
    # binary bundle. ``classes`` reads it.
    class_probabilities: Mapped[str | None] = mapped_column(Text)

    job: Mapped[Job] = relationship(back_populates="result")

    @property
    def classes(self) -> tuple[tuple[str, float], ...]:
        """The class probabilities by name (empty for a binary bundle's result)."""
        return decode_class_probabilities(self.class_probabilities)


def encode_class_probabilities(classes: Sequence[tuple[str, float]]) -> str | None:
    """The stored form of class probabilities: JSON ``[[name, p], ...]``; None for none."""
    if not classes:
        return None
    return json.dumps([[str(name), float(p)] for name, p in classes])


def decode_class_probabilities(stored: str | None) -> tuple[tuple[str, float], ...]:
    """Class probabilities from their stored form (empty for None)."""
    if not stored:
        return ()
    return tuple((str(name), float(p)) for name, p in json.loads(stored))


# Bounds of the identifying fields kept on a study (characters; longer values are cut).
# A worklist search key (migration 0008): PostgreSQL's "C" collation, SQLite's bytes.
_SEARCH_KEY = String(64).with_variant(String(64, collation="C"), "postgresql")

IDENTITY_LENGTHS = {
    "patient_name": 64,
    "patient_id": 64,
    "accession_number": 64,
    "study_date": 8,
    "study_time": 16,
    "patient_age": 4,
    "patient_sex": 16,
    "study_description": 64,
    "modality": 16,
}


class Study(Base):
    """A study as the worklist sees it: one row per Study Instance UID.

    Created when its first image is received (with the identifying fields of that
    image's header) and summed up again each time one of its images is scored:
    ``images`` counts the scored ones, and the study is listed (open, on the worklist)
    while it has one and has not left the list (``closed_at`` and why).

    The ordering columns hold the worklist's rules (see :mod:`daemon.worklist`):
    ``band_rank`` is the study's rank among the bands after the sender's floor (0 the
    top band, 0.5 not assessed), ``unscored`` puts the studies placed as not assessed
    after the scored ones of their rank, and ``order_score`` / ``order_logit`` (the
    negated score and logit, so one ascending index serves; 0 when unscored) order the
    rest; only overdue-ness depends on the clock, at query time.
    """

    __tablename__ = "studies"
    __table_args__ = (
        # The overdue part's order, whole (its ties too), so a page is read from it.
        Index(
            "ix_studies_listed_arrived",
            "listed",
            "arrived_at",
            "band_rank",
            "unscored",
            "order_score",
            "order_logit",
        ),
        Index(
            "ix_studies_listed_order",
            "listed",
            "band_rank",
            "unscored",
            "order_score",
            "order_logit",
            "arrived_at",
        ),
        Index("ix_studies_accession", "accession_number"),
        Index("ix_studies_patient_id", "patient_id"),
        Index("ix_studies_closed_at", "closed_at"),
        Index("ix_studies_last_received", "last_received_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_instance_uid: Mapped[str] = mapped_column(String(UID_LENGTH), unique=True)
    # Identifying fields (bounded by IDENTITY_LENGTHS; blanked past retention).
    patient_name: Mapped[str | None] = mapped_column(String(64))
    # Searched by prefix as a range (daemon.worklist): compared byte by byte, as on SQLite.
    patient_id: Mapped[str | None] = mapped_column(_SEARCH_KEY)
    accession_number: Mapped[str | None] = mapped_column(_SEARCH_KEY)
    study_date: Mapped[str | None] = mapped_column(String(8))  # YYYYMMDD, as DICOM DA
    study_time: Mapped[str | None] = mapped_column(String(16))  # DICOM TM
    patient_age: Mapped[str | None] = mapped_column(String(4))  # DICOM AS, e.g. 042Y
    patient_sex: Mapped[str | None] = mapped_column(String(16))
    study_description: Mapped[str | None] = mapped_column(String(64))
    modality: Mapped[str | None] = mapped_column(String(16))
    identity_blanked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The scored images summed up.
    # Its latest image's receipt (retention blanks the identity after it), and its
    # first scored image's (where it stands: the waiting time counts from it).
    last_received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    arrived_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    images: Mapped[int] = mapped_column(Integer, default=0)
    requested_priority: Mapped[str] = mapped_column(String(8), default="MEDIUM")
    raised_by_sender: Mapped[bool] = mapped_column(Boolean, default=False)
    band: Mapped[str | None] = mapped_column(String(16))  # of its best assessable image
    band_rank: Mapped[float] = mapped_column(Float, default=0.0)
    not_assessed: Mapped[bool] = mapped_column(Boolean, default=False)  # placed as not assessed
    unscored: Mapped[bool] = mapped_column(Boolean, default=False)
    score: Mapped[float | None] = mapped_column(Float)  # best assessable image's
    logit: Mapped[float | None] = mapped_column(Float)
    order_score: Mapped[float] = mapped_column(Float, default=0.0)
    order_logit: Mapped[float] = mapped_column(Float, default=0.0)
    threshold: Mapped[float | None] = mapped_column(Float)
    result_id: Mapped[int | None] = mapped_column(Integer)
    not_assessed_count: Mapped[int] = mapped_column(Integer, default=0)
    not_assessed_reason: Mapped[str | None] = mapped_column(String(16))
    not_assessed_detail: Mapped[str | None] = mapped_column(Text)
    not_assessed_result_id: Mapped[int | None] = mapped_column(Integer)
    model_version: Mapped[str | None] = mapped_column(String(128))
    calibration_version: Mapped[int | None] = mapped_column(Integer)
    # On the worklist: a scored image, and not left the list.
    listed: Mapped[bool] = mapped_column(Boolean, default=False)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    closed_reason: Mapped[str | None] = mapped_column(String(32))
    closed_by: Mapped[str | None] = mapped_column(String(64))
    # The study's own report (one SR for the study, see daemon.study_reports): whether
    # an image scored since the last decision may change it, how many were issued, and
    # what the last one said (its deciding result, band and flag; band None: the study
    # was reported not assessed).
    report_pending: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=false(), index=True
    )
    report_revision: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    reported_result_id: Mapped[int | None] = mapped_column(Integer)
    reported_band: Mapped[str | None] = mapped_column(String(16))
    reported_above: Mapped[bool | None] = mapped_column(Boolean)
    reported_sop_instance_uid: Mapped[str | None] = mapped_column(String(UID_LENGTH))


class Output(Base):
    """A generated DICOM object in the outbox directory."""

    __tablename__ = "outputs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"), index=True)
    kind: Mapped[OutputKind] = mapped_column(_enum(OutputKind, "output_kind"))
    sop_class_uid: Mapped[str] = mapped_column(String(UID_LENGTH))
    sop_instance_uid: Mapped[str] = mapped_column(String(UID_LENGTH), unique=True)
    series_instance_uid: Mapped[str] = mapped_column(String(UID_LENGTH))
    file_name: Mapped[str] = mapped_column(String(255))  # relative to the outbox directory
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    job: Mapped[Job] = relationship(back_populates="outputs")
    deliveries: Mapped[list[Delivery]] = relationship(back_populates="output")


class Delivery(Base):
    """One output on its way to one destination: the outbox row."""

    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("output_id", "destination"),
        Index("ix_deliveries_state_due", "state", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    output_id: Mapped[int] = mapped_column(ForeignKey("outputs.id"))
    destination: Mapped[str] = mapped_column(String(32))
    state: Mapped[DeliveryState] = mapped_column(
        _enum(DeliveryState, "delivery_state"), default=DeliveryState.PENDING
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    lease_owner: Mapped[str | None] = mapped_column(String(128))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_status: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    output: Mapped[Output] = relationship(back_populates="deliveries")


class FeedbackLabel(enum.StrEnum):
    """What the radiologist found on the study."""

    PNEUMONIA = "pneumonia"  # pneumonia confirmed
    NO_PNEUMONIA = "no_pneumonia"
    INDETERMINATE = "indeterminate"


class FeedbackSource(enum.StrEnum):
    """Where a label came from: a reader's own click here, or the final report's text."""

    READER = "reader"
    REPORT = "report"  # derived from the radiologist's final report (HL7), with its evidence


class Feedback(Base):
    """A radiologist's finding on a study, linked to the prediction it judges."""

    __tablename__ = "feedback"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_instance_uid: Mapped[str] = mapped_column(String(UID_LENGTH), unique=True)
    # The study's prediction when the feedback was first given (its highest score).
    result_id: Mapped[int] = mapped_column(ForeignKey("results.id"), index=True)
    label: Mapped[FeedbackLabel] = mapped_column(_enum(FeedbackLabel, "feedback_label"))
    comment: Mapped[str | None] = mapped_column(Text)
    given_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    source: Mapped[FeedbackSource] = mapped_column(
        _enum(FeedbackSource, "feedback_source"),
        default=FeedbackSource.READER,
        server_default=FeedbackSource.READER.value,
    )
    # For a label from a report: the phrase of the report that decided it.
    evidence: Mapped[str | None] = mapped_column(Text)

    result: Mapped[Result] = relationship()
    history: Mapped[list[FeedbackChange]] = relationship(
        back_populates="feedback", order_by="FeedbackChange.id"
    )


class FeedbackChange(Base):
    """One edit of a feedback: who, when, the old and the new value (append-only)."""

    __tablename__ = "feedback_changes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    feedback_id: Mapped[int] = mapped_column(ForeignKey("feedback.id"), index=True)
    changed_by: Mapped[str] = mapped_column(String(64))
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    old_label: Mapped[str | None] = mapped_column(String(16))
    new_label: Mapped[str] = mapped_column(String(16))
    old_comment: Mapped[str | None] = mapped_column(Text)
    new_comment: Mapped[str | None] = mapped_column(Text)

    feedback: Mapped[Feedback] = relationship(back_populates="history")


class StudyRead(Base):
    """A study marked read (by feedback or explicitly): it leaves the worklist."""

    __tablename__ = "study_reads"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_instance_uid: Mapped[str] = mapped_column(String(UID_LENGTH), unique=True)
    read_by: Mapped[str] = mapped_column(String(64))
    read_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    via: Mapped[str] = mapped_column(String(16))  # "feedback" or "explicit"


class AuditEntry(Base):
    """The audit trail: every feedback, threshold and calibration change, user and login.

    Append-only: the database refuses UPDATE and DELETE on this table (triggers in the
    migration).
    """

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64))
    subject: Mapped[str | None] = mapped_column(String(128))
    detail: Mapped[str | None] = mapped_column(Text)  # JSON


class CalibrationState(enum.StrEnum):
    """A local calibration's life: fitted (pending), in use (active), replaced (retired)."""

    PENDING = "pending"
    ACTIVE = "active"
    RETIRED = "retired"


class CalibrationVersion(Base):
    """A calibration fitted on local labelled cases; numbered after the bundle's own."""

    __tablename__ = "calibration_versions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[int] = mapped_column(Integer, unique=True)
    model_version: Mapped[str] = mapped_column(String(128), index=True)
    method: Mapped[str] = mapped_column(String(16))
    calibrator: Mapped[str] = mapped_column(Text)  # JSON of the calibrator's parameters
    threshold: Mapped[float] = mapped_column(Float)
    target_sensitivity: Mapped[float] = mapped_column(Float)
    n_cases: Mapped[int] = mapped_column(Integer)
    report: Mapped[str] = mapped_column(Text)  # JSON: ECE before/after, estimates
    state: Mapped[CalibrationState] = mapped_column(
        _enum(CalibrationState, "calibration_state"), default=CalibrationState.PENDING
    )
    fitted_by: Mapped[str] = mapped_column(String(64))
    fitted_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    activated_by: Mapped[str | None] = mapped_column(String(64))
    activated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class MonitoringRun(Base):
    """One run of the monitoring job over one rolling window: the figures it found."""

    __tablename__ = "monitoring_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ran_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    window_days: Mapped[int] = mapped_column(Integer)
    model_version: Mapped[str] = mapped_column(String(128))
    figures: Mapped[str] = mapped_column(Text)  # JSON


class ScheduledRun(Base):
    """When a scheduled job last started, and in which process (one row a job).

    Several processes may run the scheduler role (one a node, for availability): each
    job starts only in the one that finds its interval has passed, under the row's lock.
    """

    __tablename__ = "scheduled_runs"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    owner: Mapped[str] = mapped_column(String(200))


class MonitoringAlert(Base):
    """An alert a monitoring run raised (shown to admins; optionally sent to a webhook)."""

    __tablename__ = "monitoring_alerts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    raised_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    kind: Mapped[str] = mapped_column(String(32))  # sensitivity, ppv, drift
    window_days: Mapped[int] = mapped_column(Integer)
    message: Mapped[str] = mapped_column(Text)
    run_id: Mapped[int] = mapped_column(ForeignKey("monitoring_runs.id"))


class UserRole(enum.StrEnum):
    """What a web user may do: read and give feedback, or also administer."""

    RADIOLOGIST = "radiologist"
    ADMIN = "admin"


class User(Base):
    """A web account. Passwords are stored only as Argon2id hashes."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(256))
    role: Mapped[UserRole] = mapped_column(_enum(UserRole, "user_role"))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    # Set for a one-time password (first admin, a reset): the user must choose a new one.
    must_change_password: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by: Mapped[str] = mapped_column(String(64))
    password_changed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class WebSession(Base):
    """A signed-in browser or API client. Only the token's SHA-256 is stored."""

    __tablename__ = "web_sessions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    kind: Mapped[str] = mapped_column(String(16))  # "browser" or "api"
    csrf_token: Mapped[str] = mapped_column(String(64))
    address: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    user: Mapped[User] = relationship()


class LoginAttempt(Base):
    """One sign-in attempt, for rate limiting (by user name and by address)."""

    __tablename__ = "login_attempts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    username: Mapped[str] = mapped_column(String(64))
    address: Mapped[str] = mapped_column(String(64))
    succeeded: Mapped[bool] = mapped_column(Boolean)


class SavedAnalysis(Base):
    """An uploaded image's analysis that its user asked to keep (pixels only, no header)."""

    __tablename__ = "saved_analyses"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    filename: Mapped[str] = mapped_column(String(255))
    sha256: Mapped[str] = mapped_column(String(64))
    logit: Mapped[float] = mapped_column(Float)
    score: Mapped[float] = mapped_column(Float)
    threshold: Mapped[float] = mapped_column(Float)
    model_version: Mapped[str] = mapped_column(String(128))
    calibration_version: Mapped[int] = mapped_column(Integer)
    cam: Mapped[str] = mapped_column(Text)  # JSON rows, as on results
    image_png: Mapped[bytes] = mapped_column(LargeBinary)  # the display image, 8-bit grey

    user: Mapped[User] = relationship()
