"""Results to the RIS as HL7 v2.5.1 ORU^R01 over MLLP, against a listener that validates them.

The listener (tests/mllp_peer.py) parses every message at hl7apy's strict level and
answers as each test tells it: accepted, an application error, a rejection, an
acknowledgement of another message, or nothing. The sender runs on a real SQLite
database with real SRs in its outbox; the last test runs the daemon end to end.
"""

from __future__ import annotations

import io
import ssl
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pydicom
import pytest
from hl7apy.core import Message
from pydicom.uid import generate_uid
from sqlalchemy import select, update

from chestaid.dicom_outputs import (
    NotAssessedFinding,
    OutputIdentity,
    TriageFinding,
    not_assessed_report,
    structured_report,
)
from daemon.db import queue
from daemon.db.models import Delivery, DeliveryState, Output, OutputKind, utcnow
from daemon.db.session import SessionFactory, writing
from daemon.sender import Sender
from daemon.settings import Hl7Destination, NodeSettings, SenderSettings
from daemon.spool import FileStore
from tests.certificates import self_signed
from tests.daemon_harness import Daemon, StoreSCP, free_port, record_received, storescu, wait_until
from tests.dicom_factory import make_dx
from tests.mllp_peer import MllpPeer

pytestmark = pytest.mark.integration

URGENT = TriageFinding(0.8734, 0.42, True, "URGENT", "densenet121-test-1.0", 3)
ROUTINE = TriageFinding(0.1021, 0.42, False, "ROUTINE", "densenet121-test-1.0", 3)


@pytest.fixture
def peer() -> Iterator[MllpPeer]:
    listener = MllpPeer().start()
    yield listener
    listener.stop()


def _destination(port: int, **values: object) -> Hl7Destination:
    return Hl7Destination.model_validate(
        {
            "kind": "hl7",
            "name": "ris",
            "host": "127.0.0.1",
            "port": port,
            "receiving_application": "RIS",
            "receiving_facility": "RADIOLOGY",
            **values,
        }
    )


def _scored(
    sessions: SessionFactory,
    outbox: Path,
    finding: TriageFinding | NotAssessedFinding,
    *,
    uid: str,
    destinations: dict[str, frozenset[str]],
) -> pydicom.Dataset:
    """A job with a real SR (and an SC file) in the outbox, due to ``destinations``."""
    source = make_dx(
        rows=64,
        cols=64,
        AccessionNumber=f"ACC-{uid[-4:]}",
        PatientID="P-0042",
        IssuerOfPatientID="HOSP",
        PatientName="Doe^Jane",
    )
    identity = OutputIdentity(str(generate_uid()), str(generate_uid()), 9902)
    report = (
        structured_report(source, finding, identity)
        if isinstance(finding, TriageFinding)
        else not_assessed_report(source, finding, identity)
    )
    buffer = io.BytesIO()
    report.save_as(buffer, enforce_file_format=True)
    store = FileStore(outbox)
    sr = store.write(buffer.getvalue(), name=store.new_name(stem=f"{uid}-sr"))
    sc = store.write(b"an SC file", name=store.new_name(stem=f"{uid}-sc"))
    job_id = record_received(sessions, uid, spool_name=f"2026/01/01/{uid}.dcm")
    with writing(sessions) as s:
        claim = queue.claim_job(s, owner="w", lease_seconds=60, max_attempts=3)
        assert claim is not None and claim.job_id == job_id
        outputs = [
            queue.NewOutput(
                OutputKind.SECONDARY_CAPTURE,
                "1.2.840.10008.5.1.4.1.1.7",
                f"{uid}.1",
                f"{uid}.9",
                sc.name,
                sc.size,
            ),
            queue.NewOutput(
                OutputKind.STRUCTURED_REPORT,
                str(report.SOPClassUID),
                identity.sop_instance_uid,
                identity.series_instance_uid,
                sr.name,
                sr.size,
            ),
        ]
        assessed = isinstance(finding, TriageFinding)
        assert queue.complete_job(
            s,
            job_id=job_id,
            owner="w",
            logit=0.0,
            score=finding.score if isinstance(finding, TriageFinding) else 0.5,
            threshold=0.42,
            above_threshold=assessed and finding.above_threshold,  # type: ignore[union-attr]
            priority=finding.priority if isinstance(finding, TriageFinding) else None,
            model_version=finding.model_version,
            calibration_version=finding.calibration_version,
            outputs=outputs,
            destinations=destinations,
            not_assessable=None if assessed else queue.NotAssessable("noise", "none"),
        )
    return source


def _sender(
    tmp_path: Path, sessions: SessionFactory, destination: Hl7Destination, **settings: float
) -> Sender:
    return Sender(
        sessions=sessions,
        outbox=FileStore(tmp_path / "outbox"),
        destinations=[destination],
        node=NodeSettings(network_timeout=settings.pop("network_timeout", 10.0)),
        settings=SenderSettings(backoff_initial_seconds=60, **settings),  # type: ignore[arg-type]
        owner="host:1:sender:test",
    )


def _deliveries(sessions: SessionFactory) -> list[tuple[str, DeliveryState, int, str | None]]:
    with sessions() as s:
        rows = s.execute(
            select(Output.kind, Delivery.state, Delivery.attempts, Delivery.last_error).join(
                Delivery.output
            )
        ).all()
    return [(str(k), state, attempts, error) for k, state, attempts, error in rows]


def _due_now(sessions: SessionFactory) -> None:
    with writing(sessions) as s:
        s.execute(update(Delivery).values(next_attempt_at=utcnow() - timedelta(seconds=1)))


def _value(message: Message, segment_field: str) -> str:
    """The ER7 of a field, e.g. ``PID.3`` or ``OBX[2].5`` (1-based repetition of a segment)."""
    name, number = segment_field.split(".")
    index = 1
    if "[" in name:
        name, index_text = name.rstrip("]").split("[")
        index = int(index_text)
    segments = [s for s in str(message.to_er7()).split("\r") if s.startswith(name + "|")]
    fields = segments[index - 1].split("|")
    position = int(number) if name != "MSH" else int(number) - 1
    return fields[position] if position < len(fields) else ""


def _observations(message: Message) -> dict[str, str]:
    found = {}
    for segment in str(message.to_er7()).split("\r"):
        if segment.startswith("OBX|"):
            fields = segment.split("|")
            found[fields[3].split("^")[0]] = fields[5]
    return found


def test_a_result_reaches_the_ris_as_a_valid_oru_stating_what_the_sr_states(
    tmp_path: Path, sessions: SessionFactory, peer: MllpPeer
) -> None:
    source = _scored(
        sessions,
        tmp_path / "outbox",
        URGENT,
        uid="1.2.3.1001",
        destinations={"ris": frozenset({"sr"})},
    )
    counts = _sender(tmp_path, sessions, _destination(peer.port)).deliver_until_idle()
    assert counts["delivered"] == 1 and counts["claimed"] == 1
    # The SC is not routed to the RIS at all; the SR's one delivery is done.
    assert _deliveries(sessions) == [("sr", DeliveryState.DELIVERED, 1, None)]
    assert peer.invalid == [] and len(peer.received) == 1
    message = peer.received[0]
    assert _value(message, "MSH.9") == "ORU^R01^ORU_R01"
    assert _value(message, "MSH.12") == "2.5.1"
    assert (_value(message, "MSH.5"), _value(message, "MSH.6")) == ("RIS", "RADIOLOGY")
    assert _value(message, "PID.3") == "P-0042^^^HOSP"
    assert _value(message, "PID.5") == "Doe^Jane"
    assert _value(message, "OBR.3") == _value(message, "OBR.18") == source.AccessionNumber
    assert _value(message, "OBR.25") == "P"  # preliminary: no reader has verified it
    assert _value(message, "TQ1.9") == "S^STAT^HL70485"
    observed = _observations(message)
    assert observed["PNEUMONIA-BAND"] == "URGENT"
    assert float(observed["PNEUMONIA-PROB"]) == pytest.approx(URGENT.score, abs=1e-4)
    assert observed["PNEUMONIA-SUSP"] == "Y^Yes^HL70136"
    assert observed["STUDY-UID"] == source.StudyInstanceUID
    assert observed["111001"] == "ChestAid"
    assert observed["111003"] == URGENT.model_version
    assert observed["CALIBRATION-VERSION"] == "3"
    assert "not a diagnosis" in _value(message, "NTE.3")
    assert all(s.split("|")[11] == "P" for s in peer.raw[0].split("\r") if s.startswith("OBX|"))


def test_a_band_that_does_not_raise_asks_no_priority_so_the_order_keeps_its_own(
    tmp_path: Path, sessions: SessionFactory, peer: MllpPeer
) -> None:
    _scored(
        sessions,
        tmp_path / "outbox",
        ROUTINE,
        uid="1.2.3.1002",
        destinations={"ris": frozenset({"sr"})},
    )
    assert _sender(tmp_path, sessions, _destination(peer.port)).deliver_until_idle()["delivered"]
    message = peer.raw[0]
    assert "\rTQ1|" not in message  # no priority asked at all
    assert _observations(peer.received[0])["PNEUMONIA-BAND"] == "ROUTINE"
    assert _observations(peer.received[0])["PNEUMONIA-SUSP"] == "N^No^HL70136"


def test_an_image_not_assessed_is_reported_without_score_flag_or_priority(
    tmp_path: Path, sessions: SessionFactory, peer: MllpPeer
) -> None:
    finding = NotAssessedFinding("noise", "No image structure.", "densenet121-test-1.0", 3)
    _scored(
        sessions,
        tmp_path / "outbox",
        finding,
        uid="1.2.3.1003",
        destinations={"ris": frozenset({"sr"})},
    )
    assert _sender(tmp_path, sessions, _destination(peer.port)).deliver_until_idle()["delivered"]
    observed = _observations(peer.received[0])
    assert observed["PNEUMONIA-BAND"] == "NOT ASSESSED"
    assert "PNEUMONIA-PROB" not in observed and "PNEUMONIA-SUSP" not in observed
    assert "\rTQ1|" not in peer.raw[0]
    assert "not assessed by ChestAid: noise" in peer.raw[0]


def test_an_application_error_is_retried_with_the_same_control_id_until_accepted(
    tmp_path: Path, sessions: SessionFactory, peer: MllpPeer
) -> None:
    _scored(
        sessions,
        tmp_path / "outbox",
        URGENT,
        uid="1.2.3.1004",
        destinations={"ris": frozenset({"sr"})},
    )
    sender = _sender(tmp_path, sessions, _destination(peer.port))
    peer.answer = "AE"
    assert sender.deliver_round()["retrying"] == 1
    [(_, state, attempts, error)] = _deliveries(sessions)
    assert (state, attempts) == (DeliveryState.PENDING, 1)
    assert error is not None and "(AE)" in error and "answered AE by the test" in error
    peer.answer = "AA"
    _due_now(sessions)
    assert sender.deliver_round()["delivered"] == 1
    first, second = (_value(m, "MSH.10") for m in peer.received)
    assert first == second  # a receiver that processed the first can drop the second


def test_a_rejection_is_dead_lettered_at_once_with_the_receivers_reason(
    tmp_path: Path, sessions: SessionFactory, peer: MllpPeer
) -> None:
    _scored(
        sessions,
        tmp_path / "outbox",
        URGENT,
        uid="1.2.3.1005",
        destinations={"ris": frozenset({"sr"})},
    )
    peer.answer = "AR"
    counts = _sender(tmp_path, sessions, _destination(peer.port)).deliver_until_idle()
    assert counts["dead"] == 1
    [(_, state, attempts, error)] = _deliveries(sessions)
    assert (state, attempts) == (DeliveryState.DEAD, 1)
    assert error is not None and "rejected" in error and "answered AR by the test" in error


@pytest.mark.parametrize(
    ("answer", "expected"),
    [(None, "no answer from"), ("wrong-id", "acknowledged message 'SOMETHING-ELSE'")],
)
def test_no_answer_or_an_answer_to_another_message_is_retried(
    tmp_path: Path, sessions: SessionFactory, peer: MllpPeer, answer: str | None, expected: str
) -> None:
    _scored(
        sessions,
        tmp_path / "outbox",
        URGENT,
        uid="1.2.3.1006",
        destinations={"ris": frozenset({"sr"})},
    )
    peer.answer = answer
    sender = _sender(tmp_path, sessions, _destination(peer.port), network_timeout=1.0)
    assert sender.deliver_round()["retrying"] == 1
    [(_, state, _, error)] = _deliveries(sessions)
    assert state == DeliveryState.PENDING
    assert error is not None and expected in error


def test_a_ris_that_is_down_is_retried(tmp_path: Path, sessions: SessionFactory) -> None:
    _scored(
        sessions,
        tmp_path / "outbox",
        URGENT,
        uid="1.2.3.1007",
        destinations={"ris": frozenset({"sr"})},
    )
    sender = _sender(tmp_path, sessions, _destination(free_port()))
    assert sender.deliver_round()["retrying"] == 1
    [(_, state, _, error)] = _deliveries(sessions)
    assert state == DeliveryState.PENDING and error is not None and "cannot connect" in error


def test_the_daemon_sends_the_pacs_both_objects_and_the_ris_one_message(tmp_path: Path) -> None:
    pacs = StoreSCP(tmp_path / "pacs").start()
    peer = MllpPeer().start()
    daemon = Daemon(
        tmp_path / "node",
        destinations=[
            pacs.destination(),
            {"kind": "hl7", "name": "ris", "host": "127.0.0.1", "port": peer.port},
        ],
    )
    daemon.start()
    try:
        make_dx(tmp_path / "a.dcm", rows=128, cols=128, AccessionNumber="ACC-77", PatientID="P-9")
        assert storescu([tmp_path / "a.dcm"], daemon.port).returncode == 0
        assert peer.wait_count(1, timeout=120), daemon.logs()[-3000:]
        wait_until(lambda: len(pacs.files()) == 2, timeout=60, what="the SC and SR at the PACS")
        wait_until(
            lambda: (
                daemon.query("SELECT count(*) FROM deliveries WHERE state = 'delivered'")[0][0] == 3
            ),
            timeout=60,
            what="three deliveries recorded",
        )
        by_destination = daemon.query(
            "SELECT d.destination, o.kind FROM deliveries d JOIN outputs o ON o.id = d.output_id "
            "ORDER BY d.destination, o.kind"
        )
        assert by_destination == [("pacs", "sc"), ("pacs", "sr"), ("ris", "sr")]
        [(score, band)] = daemon.query("SELECT score, priority FROM results")
        observed = _observations(peer.received[0])
        assert observed["PNEUMONIA-BAND"] == band
        assert float(observed["PNEUMONIA-PROB"]) == pytest.approx(score, abs=1e-4)
        assert _value(peer.received[0], "OBR.3") == "ACC-77"
        assert _value(peer.received[0], "PID.3") == "P-9"
        assert peer.invalid == []
    finally:
        daemon.stop()
        peer.stop()
        pacs.stop()


@pytest.fixture(scope="module")
def ris_certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return self_signed(tmp_path_factory.mktemp("ris-tls"), "ris", "DNS:ris.test", "IP:127.0.0.1")


def test_results_reach_a_ris_over_tls_that_is_verified(
    tmp_path: Path, sessions: SessionFactory, ris_certificate: tuple[Path, Path]
) -> None:
    cert, key = ris_certificate
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    peer = MllpPeer(tls=context).start()
    try:
        _scored(
            sessions, tmp_path / "outbox", URGENT, uid="1.2.3.1008",
            destinations={"ris": frozenset({"sr"})},
        )  # fmt: skip
        # Not trusted (no CA given: the system's CAs do not know this one): retried, saying why.
        untrusted = _sender(tmp_path, sessions, _destination(peer.port, tls={}))
        assert untrusted.deliver_round()["retrying"] == 1
        [(_, _, _, error)] = _deliveries(sessions)
        assert error is not None and "TLS handshake" in error and "verify" in error
        _due_now(sessions)
        trusted = _destination(peer.port, tls={"ca_file": str(cert), "server_name": "ris.test"})
        assert _sender(tmp_path, sessions, trusted).deliver_round()["delivered"] == 1
        assert len(peer.received) == 1 and peer.invalid == []
    finally:
        peer.stop()
