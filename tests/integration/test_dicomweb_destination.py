"""The dicomweb destination kind against real HTTP peers.

Orthanc with its DICOMweb plugin, asking for HTTP basic authentication, receives real
ChestAid outputs (the SC and the SR) by STOW-RS: through the sender on a real SQLite
database and outbox, and end to end through the daemon from a DX sent by storescu.
Orthanc has no bearer tokens, so those are checked against a small STOW-RS service
made here (a real HTTP server on loopback that reads the posted instances and answers
as PS3.18 says), which also gives the answers Orthanc never gives (202 with a warning,
409 with a failure reason).
"""

from __future__ import annotations

import contextlib
import email.parser
import email.policy
import io
import json
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydicom import Dataset, dcmread
from pydicom.uid import generate_uid
from sqlalchemy import select

from chestaid.dicom_outputs import (
    OutputIdentity,
    TriageFinding,
    secondary_capture,
    structured_report,
)
from chestaid.imaging import read_dicom_dataset, read_image
from daemon.db import queue
from daemon.db.migrate import upgrade
from daemon.db.models import Delivery, DeliveryState, OutputKind
from daemon.db.session import SessionFactory, make_engine, make_session_factory, writing
from daemon.sender import Sender
from daemon.settings import DicomWebDestination, NodeSettings, SenderSettings
from daemon.spool import FileStore
from tests.certificates import self_signed
from tests.daemon_harness import Daemon, complete_urgent, record_received, storescu, wait_until
from tests.dicom_factory import make_dx
from tests.orthanc import Orthanc, require_dicomweb_plugin

pytestmark = pytest.mark.integration

USER, PASSWORD = "chestaid", "correct-horse-battery"
FINDING = TriageFinding(0.91, 0.42, True, "URGENT", "densenet121-test-1.0", 2)
SC_CLASS, SR_CLASS = "1.2.840.10008.5.1.4.1.1.7", "1.2.840.10008.5.1.4.1.1.88.33"


def _orthanc(root: Path) -> Orthanc:
    return Orthanc(
        root,
        plugins=(require_dicomweb_plugin(),),
        users={USER: PASSWORD},
        extra={"DicomWeb": {"Enable": True, "Root": "/dicom-web/"}},
    )


@pytest.fixture
def orthanc(tmp_path: Path) -> Iterator[Orthanc]:
    server = _orthanc(tmp_path / "orthanc").start()
    yield server
    server.stop()


def _secret(tmp_path: Path, name: str, value: str) -> Path:
    path = tmp_path / name
    path.write_text(value + "\n", encoding="utf-8")
    path.chmod(0o600)
    return path


def _basic(tmp_path: Path, url: str, password: str = PASSWORD) -> DicomWebDestination:
    auth = {"type": "basic", "username": USER, "password_file": _secret(tmp_path, "pw", password)}
    return DicomWebDestination.model_validate(
        {"kind": "dicomweb", "name": "vna", "url": url, "auth": auth}
    )


@dataclass
class Node:
    """A real SQLite database and outbox holding one scored DX's SC and SR, due to "vna"."""

    sessions: SessionFactory
    outbox: FileStore
    uids: dict[str, str] = field(default_factory=dict)  # SOP class UID -> instance UID

    def sender(self, destination: DicomWebDestination, **settings: Any) -> Sender:
        return Sender(
            sessions=self.sessions,
            outbox=self.outbox,
            destinations=[destination],
            node=NodeSettings(network_timeout=10),
            settings=SenderSettings(**{"backoff_initial_seconds": 60, **settings}),
            owner="host:1:sender:test",
        )

    def deliveries(self) -> list[tuple[str, DeliveryState, int, str | None]]:
        with writing(self.sessions) as s:
            rows = s.scalars(select(Delivery).order_by(Delivery.id)).all()
            return [(d.destination, d.state, d.attempts, d.last_error) for d in rows]

    def states(self) -> list[DeliveryState]:
        return [state for _, state, _, _ in self.deliveries()]


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    engine = make_engine(f"sqlite:///{tmp_path / 'chestaid.db'}", busy_timeout=2.0)
    upgrade(engine)
    sessions = make_session_factory(engine)
    outbox = tmp_path / "outbox"
    source_path = tmp_path / "dx.dcm"
    make_dx(source_path, rows=300, cols=240)
    source = read_dicom_dataset(source_path)
    cam = np.random.default_rng(1).random((7, 7)).astype(np.float32)
    sc = secondary_capture(
        source,
        read_image(source_path).pixels,
        cam,
        FINDING,
        OutputIdentity(str(generate_uid()), str(generate_uid()), 9901),
        max_side=256,
    )
    sr = structured_report(
        source, FINDING, OutputIdentity(str(generate_uid()), str(generate_uid()), 9902)
    )
    job_id = record_received(sessions, str(source.SOPInstanceUID), spool_name="2026/dx.dcm")
    with writing(sessions) as s:
        assert queue.claim_job(s, owner="w", lease_seconds=60, max_attempts=3) is not None
    outputs, uids = [], {}
    for kind, dataset in ((OutputKind.SECONDARY_CAPTURE, sc), (OutputKind.STRUCTURED_REPORT, sr)):
        name = f"2026/{kind.value}.dcm"
        (outbox / name).parent.mkdir(parents=True, exist_ok=True)
        dataset.save_as(outbox / name, enforce_file_format=True)
        uids[str(dataset.SOPClassUID)] = str(dataset.SOPInstanceUID)
        outputs.append(
            queue.NewOutput(
                kind=kind,
                sop_class_uid=str(dataset.SOPClassUID),
                sop_instance_uid=str(dataset.SOPInstanceUID),
                series_instance_uid=str(dataset.SeriesInstanceUID),
                file_name=name,
                size_bytes=(outbox / name).stat().st_size,
            )
        )
    complete_urgent(sessions, job_id, outputs=outputs, destinations=["vna"])
    yield Node(sessions, FileStore(outbox), uids)
    engine.dispose()


def _deliver_until(sender: Sender, node: Node, states: list[DeliveryState]) -> None:
    """Run delivery rounds until the deliveries are in ``states`` (backoffs pass meanwhile)."""

    def reached() -> bool:
        sender.deliver_round()
        return node.states() == states

    wait_until(reached, timeout=30, what=f"deliveries {[s.value for s in states]}")


def _instances_in(orthanc: Orthanc) -> dict[str, str]:
    """SOP class UID -> SOP instance UID of every instance Orthanc holds."""
    tags = [orthanc.get(f"/instances/{i}/simplified-tags") for i in orthanc.get("/instances")]
    return {t["SOPClassUID"]: t["SOPInstanceUID"] for t in tags}


def test_the_sender_stores_the_sc_and_the_sr_in_orthanc_by_stow_rs(
    tmp_path: Path, orthanc: Orthanc, node: Node
) -> None:
    sender = node.sender(_basic(tmp_path, f"{orthanc.url}/dicom-web"))
    assert sender.deliver_until_idle() == {"claimed": 2, "delivered": 2, "retrying": 0, "dead": 0}
    assert _instances_in(orthanc) == node.uids
    assert set(node.uids) == {SC_CLASS, SR_CLASS}
    assert node.deliveries() == [("vna", DeliveryState.DELIVERED, 1, None)] * 2


def test_a_wrong_password_is_retried_then_dead_lettered_saying_401(
    tmp_path: Path, orthanc: Orthanc, node: Node
) -> None:
    destination = _basic(tmp_path, f"{orthanc.url}/dicom-web", password="not-the-password")
    sender = node.sender(destination, max_attempts=2, backoff_initial_seconds=0.05)
    assert sender.deliver_round() == {"claimed": 2, "delivered": 0, "retrying": 2, "dead": 0}
    assert node.states() == [DeliveryState.PENDING] * 2
    # The second attempt, once the short backoff has passed, is the last.
    _deliver_until(sender, node, [DeliveryState.DEAD] * 2)
    for _, _, attempts, error in node.deliveries():
        assert attempts == 2
        assert error is not None and "HTTP 401" in error and "credentials" in error
        assert PASSWORD not in error and "not-the-password" not in error
    assert orthanc.get("/instances") == []


def test_orthanc_down_is_a_transient_failure_and_delivery_resumes_when_it_is_back(
    tmp_path: Path, node: Node
) -> None:
    orthanc = _orthanc(tmp_path / "orthanc")  # its ports chosen, nothing listening yet
    sender = node.sender(_basic(tmp_path, f"{orthanc.url}/dicom-web"), backoff_initial_seconds=0.05)
    assert sender.deliver_round() == {"claimed": 2, "delivered": 0, "retrying": 2, "dead": 0}
    [first, second] = node.deliveries()
    assert first[1] == DeliveryState.PENDING and "cannot reach vna" in (first[3] or "")
    # The second was not tried after the first found nobody there.
    assert second[1] == DeliveryState.PENDING and "not tried" in (second[3] or "")
    orthanc.start()
    try:
        _deliver_until(sender, node, [DeliveryState.DELIVERED] * 2)
        assert _instances_in(orthanc) == node.uids
    finally:
        orthanc.stop()


def test_a_dx_sent_to_the_daemon_reaches_orthanc_by_dicomweb(
    tmp_path: Path, orthanc: Orthanc
) -> None:
    password_file = _secret(tmp_path, "vna-password", PASSWORD)
    daemon = Daemon(
        tmp_path / "node",
        destinations=[
            {
                "kind": "dicomweb",
                "name": "vna",
                "url": f"{orthanc.url}/dicom-web",
                "auth": {"type": "basic", "username": USER, "password_file": str(password_file)},
            }
        ],
    )
    daemon.start()
    try:
        source = make_dx(
            tmp_path / "cxr.dcm", rows=256, cols=208, modality="DX", photometric="MONOCHROME2"
        )
        assert storescu([tmp_path / "cxr.dcm"], daemon.port).returncode == 0
        wait_until(daemon.terminal, timeout=120, what="scoring and delivery to finish")
        rows = daemon.query(
            "SELECT o.sop_instance_uid, d.destination, d.state FROM deliveries d"
            " JOIN outputs o ON o.id = d.output_id ORDER BY d.id"
        )
        assert [(dest, state) for _, dest, state in rows] == [("vna", "delivered")] * 2
        held = _instances_in(orthanc)
        assert sorted(held) == [SC_CLASS, SR_CLASS]
        assert sorted(held.values()) == sorted(uid for uid, _, _ in rows)
        study = orthanc.get(f"/instances/{orthanc.get('/instances')[0]}/simplified-tags")
        assert study["StudyInstanceUID"] == str(source.StudyInstanceUID)
    finally:
        daemon.stop()


# -- a STOW-RS service of our own, for bearer tokens and the answers Orthanc never gives --


@dataclass
class StowService:
    """A STOW-RS service on loopback: checks the bearer token, reads each instance."""

    token: str
    answer: str = "stored"  # or "warning" (202), "conflict" (409 with 0xA900), "busy" (503)
    received: list[str] = field(default_factory=list)  # SOP instance UIDs, in order
    authorizations: list[str] = field(default_factory=list)

    def handler(self) -> type[BaseHTTPRequestHandler]:
        service = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                presented = self.headers.get("Authorization", "")
                service.authorizations.append(presented)
                if presented != f"Bearer {service.token}":
                    self._reply(401, None)
                    return
                uid = service.read_instance(self.headers["Content-Type"], body)
                service.received.append(uid)
                self._reply(*service.reply(uid))

            def _reply(self, status: int, answer: dict[str, Any] | None) -> None:
                payload = json.dumps(answer).encode() if answer is not None else b""
                self.send_response(status)
                self.send_header("Content-Type", "application/dicom+json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        return Handler

    @staticmethod
    def read_instance(content_type: str, body: bytes) -> str:
        """The SOP Instance UID of the one application/dicom part of a multipart body."""
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            f"Content-Type: {content_type}\r\n\r\n".encode() + body
        )
        [part] = [p for p in message.iter_parts() if p.get_content_type() == "application/dicom"]
        payload = part.get_payload(decode=True)
        assert isinstance(payload, bytes)
        return str(dcmread(io.BytesIO(payload)).SOPInstanceUID)

    def reply(self, uid: str) -> tuple[int, dict[str, Any] | None]:
        item = Dataset()
        item.ReferencedSOPInstanceUID = uid
        if self.answer == "busy":
            return 503, None
        answer = Dataset()
        if self.answer == "conflict":
            item.FailureReason = 0xA900
            answer.FailedSOPSequence = [item]
            return 409, answer.to_json_dict()
        if self.answer == "warning":
            item.WarningReason = 0xB000
        answer.ReferencedSOPSequence = [item]
        return (202 if self.answer == "warning" else 200), answer.to_json_dict()


@contextlib.contextmanager
def _serve(service: StowService, tls: ssl.SSLContext | None = None) -> Iterator[str]:
    """Run ``service`` on loopback (over TLS with ``tls``); yields its service root."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), service.handler())
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    scheme = "https" if tls is not None else "http"
    try:
        yield f"{scheme}://127.0.0.1:{server.server_address[1]}/dicomweb"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture
def stow() -> Iterator[tuple[StowService, str]]:
    service = StowService(token="t0ken-" + "x" * 24)
    with _serve(service) as url:
        yield service, url


def _bearer(tmp_path: Path, url: str, token: str) -> DicomWebDestination:
    auth = {"type": "bearer", "token_file": _secret(tmp_path, "token", token)}
    return DicomWebDestination.model_validate(
        {"kind": "dicomweb", "name": "vna", "url": url, "auth": auth}
    )


def test_a_bearer_token_goes_in_the_authorization_header(
    tmp_path: Path, stow: tuple[StowService, str], node: Node
) -> None:
    service, url = stow
    sender = node.sender(_bearer(tmp_path, url, service.token))
    assert sender.deliver_until_idle()["delivered"] == 2
    assert service.authorizations == [f"Bearer {service.token}"] * 2
    assert sorted(service.received) == sorted(node.uids.values())
    assert node.states() == [DeliveryState.DELIVERED] * 2


def test_a_wrong_bearer_token_is_a_transient_401(
    tmp_path: Path, stow: tuple[StowService, str], node: Node
) -> None:
    service, url = stow
    sender = node.sender(_bearer(tmp_path, url, "wrong-" + "y" * 24))
    assert sender.deliver_until_idle() == {"claimed": 2, "delivered": 0, "retrying": 2, "dead": 0}
    assert all("HTTP 401" in (error or "") for _, _, _, error in node.deliveries())
    assert service.received == []


def test_a_warning_is_stored_with_its_reason_and_a_conflict_is_dead_at_once(
    tmp_path: Path, stow: tuple[StowService, str], node: Node
) -> None:
    service, url = stow
    service.answer = "conflict"
    sender = node.sender(_bearer(tmp_path, url, service.token))
    assert sender.deliver_until_idle() == {"claimed": 2, "delivered": 0, "retrying": 0, "dead": 2}
    for _, state, attempts, error in node.deliveries():
        assert state == DeliveryState.DEAD and attempts == 1
        assert error is not None and "HTTP 409" in error and "0xA900" in error
    with writing(node.sessions) as s:
        assert s.scalars(select(Delivery.last_status)).all() == [0xA900, 0xA900]
        assert len(queue.retry_deliveries(s, all_dead=True)) == 2
    service.answer = "warning"
    assert sender.deliver_until_idle()["delivered"] == 2
    with writing(node.sessions) as s:
        assert s.scalars(select(Delivery.last_status)).all() == [0xB000, 0xB000]


def test_a_busy_service_is_retried(
    tmp_path: Path, stow: tuple[StowService, str], node: Node
) -> None:
    service, url = stow
    service.answer = "busy"
    sender = node.sender(_bearer(tmp_path, url, service.token))
    assert sender.deliver_until_idle() == {"claimed": 2, "delivered": 0, "retrying": 2, "dead": 0}
    assert all("HTTP 503" in (error or "") for _, _, _, error in node.deliveries())
    # dicomweb-client's own retries are off: one request per delivery, not five.
    assert len(service.received) == 2


def test_over_https_the_certificate_is_verified_against_ca_file_and_server_name(
    tmp_path: Path, node: Node
) -> None:
    # Debian's Orthanc 1.10 cannot serve HTTPS here, so the TLS peer is the test's service.
    served = self_signed(tmp_path, "vna", "DNS:vna.internal")
    stranger, _ = self_signed(tmp_path, "stranger", "IP:127.0.0.1")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*served)
    service = StowService(token="t0ken-" + "z" * 24)
    with _serve(service, context) as url:
        auth = {"type": "bearer", "token_file": _secret(tmp_path, "token", service.token)}
        base = {"kind": "dicomweb", "name": "vna", "url": url, "auth": auth}
        # Signed by nobody it trusts: refused in the handshake, retried later.
        untrusting = DicomWebDestination.model_validate(
            {**base, "tls": {"ca_file": stranger, "server_name": "vna.internal"}}
        )
        sender = node.sender(untrusting, backoff_initial_seconds=0.05)
        assert sender.deliver_round()["retrying"] == 2
        [(_, state, _, error), _] = node.deliveries()
        assert state == DeliveryState.PENDING
        assert error is not None and "CERTIFICATE_VERIFY_FAILED" in error
        # Trusted, but it names vna.internal, not the URL's 127.0.0.1.
        misnamed = DicomWebDestination.model_validate({**base, "tls": {"ca_file": served[0]}})
        sender = node.sender(misnamed, backoff_initial_seconds=0.05)
        wait_until(
            lambda: sender.deliver_round()["retrying"],
            timeout=30,
            what="a second attempt",
        )
        [(_, state, attempts, error), _] = node.deliveries()
        assert state == DeliveryState.PENDING and attempts == 2
        assert error is not None and "CERTIFICATE_VERIFY_FAILED" in error
        assert "127.0.0.1" in error  # the name that did not match
        assert service.received == []
        # Trusted and checked against the name it carries.
        trusting = DicomWebDestination.model_validate(
            {**base, "tls": {"ca_file": served[0], "server_name": "vna.internal"}}
        )
        sender = node.sender(trusting, backoff_initial_seconds=0.05)
        _deliver_until(sender, node, [DeliveryState.DELIVERED] * 2)
        assert sorted(service.received) == sorted(node.uids.values())
