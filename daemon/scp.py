"""The DICOM SCP: C-ECHO and C-STORE of chest radiographs into the durable queue.

The C-STORE handler is thin, as pynetdicom's examples are: it writes the bytes it was
sent (file meta + the dataset as received, never decoded and re-encoded) to the spool,
records the instance and a queued job in one transaction, and only then answers
success. It never runs the model. Statuses (PS3.4 B.2.3):

    0x0000  stored (or a copy already received: first wins, the sender is not punished)
    0x0122  SOP class not supported: the request's SOP class is not its presentation
            context's (PS3.7 9.1.1.1: the context names the class; one negotiated for
            another class does not support it)
    0xA700  out of resources: the spool is full or the database failed; nothing is kept
    0xA900  the dataset does not match the SOP class / the request (UIDs missing,
            malformed or wrong); the Error Comment names the attribute
    0xC210  cannot understand: the dataset cannot be parsed (PS3.4 B.2.3's Cxxx, "the SCP
            cannot understand", is for data it cannot read; A900 is for data read and
            found not to match)
    0xC212  cannot understand: a deflated dataset inflates beyond the budget the worker
            reads under. A failure, not 0xA700: out of resources invites the sender to
            try again, and the same bytes would be refused again.

Every status but success carries an Error Comment (at most 64 characters) naming what
was wrong, never quoting a value the peer sent.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from io import BytesIO
from typing import Any, cast

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_file_meta_info
from pydicom.uid import UID
from pynetdicom import AE, evt
from pynetdicom.dimse_primitives import C_STORE
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from chestaid.errors import ChestAidError, ImageTooLargeError, InvalidUIDError
from chestaid.imaging import (
    ACCEPTED_SOP_CLASSES,
    DECODABLE_TRANSFER_SYNTAXES,
    NATIVE_TRANSFER_SYNTAXES,
    REPORT_SOP_CLASSES,
    check_uid,
    read_dicom_header,
)
from daemon import metrics
from daemon.connections import GuardedAE, log_rejection
from daemon.db import queue
from daemon.db.session import SessionFactory, reading, writing
from daemon.db.studies import StudyIdentity
from daemon.errors import DaemonError, SpoolError, SpoolFullError
from daemon.settings import AllowSettings, NodeSettings
from daemon.spool import FileStore, StoredFile

logger = logging.getLogger(__name__)

VERIFICATION = UID("1.2.840.10008.1.1")
SUCCESS = 0x0000
SOP_CLASS_NOT_SUPPORTED = 0x0122
OUT_OF_RESOURCES = 0xA700
DATASET_MISMATCH = 0xA900
CANNOT_UNDERSTAND = 0xC210
INFLATES_TOO_FAR = 0xC212
DIMSE_PRIORITIES = {0: "MEDIUM", 1: "HIGH", 2: "LOW"}

# A-ASSOCIATE-RJ: rejected permanent, by the service user, with this reason.
REJECT_PERMANENT = 0x01
SOURCE_SERVICE_USER = 0x01
REASON_NONE_GIVEN = 0x01
REASON_CALLING_AE_NOT_RECOGNISED = 0x03


def peer_allowed(allow: AllowSettings, *, calling_ae: str, address: str) -> tuple[int, str] | None:
    """Why an association may not be accepted (A-ASSOCIATE-RJ reason, text), or None."""
    titles = allow.calling_ae_titles
    if titles and calling_ae.strip() not in titles:
        return (
            REASON_CALLING_AE_NOT_RECOGNISED,
            f"calling AE title {calling_ae.strip()!r} is not allowed",
        )
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return REASON_NONE_GIVEN, f"peer address {address!r} is not an IP address"
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if not any(ip in network for network in allow.parsed_networks):
        return REASON_NONE_GIVEN, f"peer address {ip} is not in an allowed network"
    return None


class IntakeMonitor:
    """When images were last being received, so scoring can give way during a burst.

    Receiving counts as busy while C-STOREs keep arriving (one within ``quiet_seconds``)
    on a connection that is still open: an association that stays open but idle does
    not hold scoring back, and neither does one that has closed (a modality that sent
    one study and released is done: its image is scored at once, not after the quiet
    period).
    """

    def __init__(self, quiet_seconds: float = 0.1) -> None:
        self.quiet_seconds = quiet_seconds
        self._last = float("-inf")
        self._open = 0
        self._lock = threading.Condition()

    def touch(self) -> None:
        """Note that a C-STORE is being received now."""
        with self._lock:
            self._last = time.monotonic()

    def opened(self) -> None:
        """Note that a connection to the SCP opened (EVT_CONN_OPEN)."""
        with self._lock:
            self._open += 1

    def closed(self) -> None:
        """Note that a connection closed (EVT_CONN_CLOSE); the last one wakes the waiters."""
        with self._lock:
            self._open = max(0, self._open - 1)
            if self._open == 0:
                self._lock.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        """Wait until receiving has been quiet for ``quiet_seconds``, at most ``timeout``.

        Returns:
            True when quiet, False when the wait ran out.
        """
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                now = time.monotonic()
                quiet_left = self._last + self.quiet_seconds - now
                if quiet_left <= 0 or self._open == 0:
                    return True
                if now >= deadline:
                    return False
                self._lock.wait(min(quiet_left, deadline - now))


@dataclass
class StoreHandler:
    """Receives C-STORE requests into the spool and the queue.

    Args:
        spool: where received files go.
        sessions: the process's session factory.
        allow: who may associate.
        on_queued: called after a job is committed (wakes an in-process worker).
        intake: told when C-STOREs arrive (for an in-process worker to give way).
        draining: set when the daemon stops; C-STOREs still arriving on open
            associations are then refused (0xA700) instead of half-handled.
    """

    spool: FileStore
    sessions: SessionFactory
    allow: AllowSettings
    on_queued: Callable[[], None] = lambda: None
    intake: IntakeMonitor | None = None
    draining: threading.Event = field(default_factory=threading.Event)
    # Associations whose C-STORE is being handled now (by id): the stop waits for these.
    _handling: set[int] = field(default_factory=set, init=False, repr=False)
    _handling_lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def handling(self, assoc: Any) -> bool:
        """Whether a C-STORE of this association is being handled at this moment."""
        with self._handling_lock:
            return id(assoc) in self._handling

    def on_requested(self, event: evt.Event) -> None:
        """EVT_REQUESTED: reject an association from a peer the allowlist does not name."""
        assoc = event.assoc
        primitive = assoc.requestor.primitive
        calling = str(primitive.calling_ae_title if primitive is not None else "")
        address = str(assoc.requestor.address)
        refusal = peer_allowed(self.allow, calling_ae=calling, address=address)
        if refusal is not None:
            code, reason = refusal
            logger.warning(
                "association rejected",
                extra={"calling_ae": calling.strip(), "peer": address, "reason": reason},
            )
            assoc.acse.send_reject(REJECT_PERMANENT, SOURCE_SERVICE_USER, code)
            # As pynetdicom does for its own rejections: wait until the A-ASSOCIATE-RJ
            # is sent and the connection is closed, so the peer gets the reason.
            assoc.kill()

    def on_store(self, event: evt.Event) -> int | Dataset:
        """EVT_C_STORE: spool, record, then answer."""
        if self.intake is not None:
            self.intake.touch()
        key = id(event.assoc)
        with self._handling_lock:
            self._handling.add(key)
        try:
            answer = self._store(event)
            metrics.count_store(answer)
            return answer
        finally:
            with self._handling_lock:
                self._handling.discard(key)
            if self.intake is not None:
                self.intake.touch()

    def _store(self, event: evt.Event) -> int | Dataset:
        if self.draining.is_set():
            logger.info("stopping: instance refused, to be sent again")
            return OUT_OF_RESOURCES
        request = cast(C_STORE, event.request)
        sop_instance_uid = str(request.AffectedSOPInstanceUID or "")
        sop_class_uid = str(request.AffectedSOPClassUID or "")
        context = event.context
        log: dict[str, Any] = {
            "sop_instance_uid": sop_instance_uid,
            "calling_ae": str(event.assoc.requestor.ae_title).strip(),
        }
        try:
            # Almost every instance is new: a read (no lock) says so without a write unit.
            with reading(self.sessions) as session:
                known = queue.instance_exists(session, sop_instance_uid=sop_instance_uid)
            again = queue.Duplicate.NEW
            if known:
                with writing(self.sessions) as session:
                    again = queue.receive_again(session, sop_instance_uid=sop_instance_uid)
            if again is queue.Duplicate.REQUEUED:
                logger.info("instance received again, its failed job queued again", extra=log)
                self.on_queued()
                return SUCCESS
            if again is queue.Duplicate.KEPT:
                logger.info("duplicate instance, first copy kept", extra=log)
                return SUCCESS
        except SQLAlchemyError as exc:
            logger.error("database unavailable", extra={**log, "error": str(exc)})
            return OUT_OF_RESOURCES

        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = UID(sop_class_uid)
        meta.MediaStorageSOPInstanceUID = UID(sop_instance_uid)
        meta.TransferSyntaxUID = context.transfer_syntax
        meta.ImplementationClassUID = event.file_meta.ImplementationClassUID
        meta.ImplementationVersionName = event.file_meta.ImplementationVersionName
        meta.SourceApplicationEntityTitle = log["calling_ae"] or None
        header = DicomBytesIO()
        header.write(b"\x00" * 128 + b"DICM")
        write_file_meta_info(header, meta, enforce_standard=True)
        body = cast(BytesIO, request.DataSet)
        try:
            stored = self.spool.write(header.getvalue(), body.getbuffer())
        except SpoolFullError as exc:
            logger.error("spool full, instance refused", extra={**log, "error": str(exc)})
            return OUT_OF_RESOURCES
        except SpoolError as exc:
            logger.error("spool write failed, instance refused", extra={**log, "error": str(exc)})
            return OUT_OF_RESOURCES
        try:
            return self._record(event, request, stored, log)
        except BaseException:
            # Whatever went wrong, a file whose sender was not answered success goes.
            self.spool.remove(stored.name)
            raise

    def _record(
        self, event: evt.Event, request: C_STORE, stored: StoredFile, log: dict[str, Any]
    ) -> int | Dataset:
        """Check the spooled file's header and record it with its job (or refuse it)."""
        sop_instance_uid, sop_class_uid = log["sop_instance_uid"], str(request.AffectedSOPClassUID)
        try:
            ds = _read_header(stored.path)
        except _HeaderError as exc:
            self.spool.remove(stored.name)
            logger.warning("unreadable dataset refused", extra={**log, "reason": str(exc)})
            return exc.refusal.answer()
        refusal = _mismatch(
            ds,
            request=request,
            context_class=str(event.context.abstract_syntax),
            transfer_syntax=str(event.context.transfer_syntax),
        )
        if refusal is not None:
            self.spool.remove(stored.name)
            logger.warning("dataset refused", extra={**log, "reason": refusal.comment})
            return refusal.answer()

        try:
            with writing(self.sessions) as session:
                job = queue.record_instance(
                    session,
                    sop_instance_uid=sop_instance_uid,
                    sop_class_uid=sop_class_uid,
                    study_instance_uid=str(ds.StudyInstanceUID),
                    series_instance_uid=str(ds.SeriesInstanceUID),
                    transfer_syntax_uid=str(event.context.transfer_syntax),
                    modality=(str(ds.get("Modality") or "").strip() or None),
                    spool_name=stored.name,
                    size_bytes=stored.size,
                    calling_ae_title=log["calling_ae"],
                    peer_address=str(event.assoc.requestor.address),
                    requested_priority=DIMSE_PRIORITIES.get(int(request.Priority or 0), "MEDIUM"),
                    identity=study_identity(ds),
                )
                job_id = job.id
        except IntegrityError as exc:
            self.spool.remove(stored.name)
            if self._already_kept(sop_instance_uid):
                # Another association stored the same instance meanwhile: first wins.
                logger.info("duplicate instance, first copy kept", extra=log)
                return SUCCESS
            logger.error("database refused the instance", extra={**log, "error": str(exc)})
            return OUT_OF_RESOURCES
        except SQLAlchemyError as exc:
            self.spool.remove(stored.name)
            logger.error(
                "database write failed, instance refused", extra={**log, "error": str(exc)}
            )
            return OUT_OF_RESOURCES
        logger.info(
            "instance received",
            extra={
                **log,
                "job_id": job_id,
                "study_instance_uid": str(ds.StudyInstanceUID),
                "bytes": stored.size,
            },
        )
        self.on_queued()
        return SUCCESS

    def _already_kept(self, sop_instance_uid: str) -> bool:
        try:
            with reading(self.sessions) as session:
                return queue.instance_exists(session, sop_instance_uid=sop_instance_uid)
        except SQLAlchemyError:
            return False


def study_identity(ds: Dataset) -> StudyIdentity:
    """The identifying fields a worklist shows, from the header already read (bounded).

    Kept in the database only, for signed-in readers; never logged. Every element of
    the header was read and converted by :func:`read_dicom_header`, so reading them
    as text here cannot fail on the peer's bytes.
    """
    return StudyIdentity.bounded(**{name: ds.get(keyword) for name, keyword in _IDENTITY_KEYWORDS})


_IDENTITY_KEYWORDS = (
    ("patient_name", "PatientName"),
    ("patient_id", "PatientID"),
    ("accession_number", "AccessionNumber"),
    ("study_date", "StudyDate"),
    ("study_time", "StudyTime"),
    ("patient_age", "PatientAge"),
    ("patient_sex", "PatientSex"),
    ("study_description", "StudyDescription"),
    ("modality", "Modality"),
)


@dataclass(frozen=True)
class _Refusal:
    """A C-STORE refused: its status and an Error Comment naming what was wrong."""

    status: int
    comment: str  # names the attribute; never quotes a value the peer sent

    def answer(self) -> Dataset:
        """The status dataset for the C-STORE response."""
        answer = Dataset()
        answer.Status = self.status
        answer.ErrorComment = self.comment[:64]  # LO: at most 64 characters
        return answer


class _HeaderError(DaemonError):
    """The received dataset's header cannot be read (internal to this module)."""

    def __init__(self, message: str, refusal: _Refusal) -> None:
        super().__init__(message)
        self.refusal = refusal


def _read_header(path: Any) -> Dataset:
    """The spooled dataset's header, read as the worker would, deflate under its budget."""
    try:
        return read_dicom_header(path)
    except ImageTooLargeError as exc:
        raise _HeaderError(
            str(exc), _Refusal(INFLATES_TOO_FAR, "inflates beyond the budget")
        ) from exc
    except ChestAidError as exc:
        raise _HeaderError(
            str(exc), _Refusal(CANNOT_UNDERSTAND, "dataset cannot be parsed")
        ) from exc
    except Exception as exc:
        # Whatever else the parser raises on bytes from the network (an unknown VR, a
        # bad struct) means the same: cannot understand.
        raise _HeaderError(
            f"cannot parse the dataset: {type(exc).__name__}: {exc}",
            _Refusal(CANNOT_UNDERSTAND, "dataset cannot be parsed"),
        ) from exc


# The UIDs ChestAid relies on: those of the request, then those of the dataset.
_REQUEST_UIDS = (
    ("AffectedSOPClassUID", "Affected SOP Class UID"),
    ("AffectedSOPInstanceUID", "Affected SOP Instance UID"),
)
_DATASET_UIDS = (
    ("SOPClassUID", "SOP Class UID"),
    ("SOPInstanceUID", "SOP Instance UID"),
    ("StudyInstanceUID", "Study Instance UID"),
    ("SeriesInstanceUID", "Series Instance UID"),
)


def _mismatch(
    ds: Dataset, *, request: C_STORE, context_class: str, transfer_syntax: str
) -> _Refusal | None:
    """Why the request and its dataset cannot be taken as they are, or None.

    UID syntax first (0xA900), then the request's class against its presentation
    context (0x0122), then the dataset against the request (0xA900).
    """
    try:
        check_uid(transfer_syntax, "Transfer Syntax UID")
        request_uids = [
            check_uid(getattr(request, keyword, None), name) for keyword, name in _REQUEST_UIDS
        ]
        dataset_uids = [check_uid(ds.get(keyword), name) for keyword, name in _DATASET_UIDS]
    except InvalidUIDError as exc:
        return _Refusal(DATASET_MISMATCH, str(exc))
    request_class, request_instance = request_uids
    dataset_class, dataset_instance = dataset_uids[:2]
    if request_class != context_class:
        return _Refusal(SOP_CLASS_NOT_SUPPORTED, "SOP Class UID differs from the context's")
    if dataset_instance != request_instance:
        return _Refusal(DATASET_MISMATCH, "SOP Instance UID differs from the request's")
    if dataset_class != request_class:
        return _Refusal(DATASET_MISMATCH, "SOP Class UID differs from the request's")
    return None


def build_ae(node: NodeSettings) -> AE:
    """The application entity from settings: contexts, limits and timeouts.

    Its servers give each peer address a share of the associations and close
    connections that send no complete A-ASSOCIATE-RQ in time (daemon.connections).
    """
    ae = GuardedAE(node.ae_title, per_address=node.per_address_limit)
    ae.maximum_associations = node.max_associations
    ae.maximum_pdu_size = node.max_pdu_bytes
    ae.acse_timeout = node.acse_timeout
    ae.dimse_timeout = node.dimse_timeout
    ae.network_timeout = node.network_timeout
    ae.require_called_aet = True
    ae.add_supported_context(VERIFICATION)
    for sop_class in ACCEPTED_SOP_CLASSES:
        ae.add_supported_context(sop_class, list(DECODABLE_TRANSFER_SYNTAXES))
    # Reports a PACS forwards with a study (ChestAid's own among them): received and
    # skipped by the worker, so the PACS's transfer of the study does not fail.
    for sop_class in REPORT_SOP_CLASSES:
        ae.add_supported_context(sop_class, list(NATIVE_TRANSFER_SYNTAXES))
    return ae


EventHandlers = list[
    tuple[evt.NotificationEvent | evt.InterventionEvent, Callable[..., Any]]
    | tuple[evt.NotificationEvent | evt.InterventionEvent, Callable[..., Any], list[Any]]
]


def handlers(handler: StoreHandler) -> EventHandlers:
    """The event handlers to bind when starting the server."""
    bound: EventHandlers = [
        (evt.EVT_REQUESTED, handler.on_requested),
        (evt.EVT_REJECTED, log_rejection),
        (evt.EVT_C_STORE, handler.on_store),
        (evt.EVT_C_ECHO, lambda _event: SUCCESS),
    ]
    intake = handler.intake
    if intake is not None:
        bound += [
            (evt.EVT_CONN_OPEN, lambda _event: intake.opened()),
            (evt.EVT_CONN_CLOSE, lambda _event: intake.closed()),
        ]
    return bound
