"""The HL7 report listener on a real socket: final reports in, acknowledgements out.

Messages are framed and sent by hand over plain sockets (and TLS), as a RIS's
interface engine would; the listener stores into a real database. The last test runs
the whole daemon: a radiograph in by storescu, its report in by MLLP, the label out.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select, update
from sqlalchemy.exc import OperationalError

from daemon.db.models import Feedback, FeedbackSource, Study
from daemon.db.session import SessionFactory, writing
from daemon.hl7.listener import ReportListener
from daemon.hl7.mllp import END, START, FrameReader, frame
from daemon.settings import ReportListenerSettings
from tests.certificates import self_signed
from tests.daemon_harness import Daemon, free_port, record_scored, storescu, wait_until
from tests.dicom_factory import make_dx

pytestmark = pytest.mark.integration


def oru(
    *,
    accession: str = "ACC-1",
    text: str = "IMPRESSION: Right lower lobe pneumonia.",
    status: str = "F",
    application: str = "RIS",
    control_id: str = "MSG00001",
    kind: str = "ORU^R01",
) -> str:
    """A final report as a RIS sends it (HL7 v2.3, the text as TX lines)."""
    obr = ["OBR", "1", "", accession, "71020^XR CHEST 2 VIEWS^C4"] + [""] * 21
    obr[25] = status
    lines = [
        f"MSH|^~\\&|{application}|HOSP|CHESTAID|HOSP|20261201120000||{kind}|{control_id}|P|2.3",
        "PID|1||P-7^^^HOSP||DOE^JANE",
        "|".join(obr),
    ]
    for index, line in enumerate(text.split("\n"), start=1):
        lines.append(f"OBX|{index}|TX|&IMP^Impression||{line}||||||{status}")
    return "\r".join(lines) + "\r"


def exchange(port: int, message: str, *, context: ssl.SSLContext | None = None) -> str | None:
    """Send one framed message; the answer's text, or None when the connection closed."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        sock = raw if context is None else context.wrap_socket(raw, server_hostname="127.0.0.1")
        sock.sendall(frame(message))
        reader = FrameReader()
        while True:
            try:
                data = sock.recv(65536)
            except ConnectionResetError:
                return None
            if not data:
                return None
            answers = reader.feed(data)
            if answers:
                return answers[0]


def msa(answer: str | None) -> list[str]:
    assert answer is not None, "the listener closed the connection without an answer"
    line = next(s for s in answer.split("\r") if s.startswith("MSA|"))
    return line.split("|")


@pytest.fixture
def scored(sessions: SessionFactory) -> str:
    study = record_scored(sessions, "1.9", logit=1.0, score=0.8, above=True)
    with writing(sessions) as s:
        s.execute(
            update(Study).where(Study.study_instance_uid == study).values(accession_number="ACC-1")
        )
    return study


def _listener(sessions: SessionFactory, **values: object) -> ReportListener:
    settings = ReportListenerSettings.model_validate(
        {"enabled": True, "port": free_port(), **values}
    )
    listener = ReportListener(settings, sessions)
    listener.start()
    return listener


@pytest.fixture
def listener(sessions: SessionFactory) -> Iterator[ReportListener]:
    running = _listener(sessions)
    yield running
    running.stop()


def test_a_final_report_is_acknowledged_after_its_label_is_stored(
    sessions: SessionFactory, scored: str, listener: ReportListener
) -> None:
    answer = exchange(listener.port, oru())
    assert msa(answer)[1:3] == ["AA", "MSG00001"]
    with sessions() as s:
        feedback = s.scalars(select(Feedback)).one()
    assert (feedback.study_instance_uid, feedback.source) == (scored, FeedbackSource.REPORT)
    assert feedback.evidence == "Right lower lobe pneumonia."


def test_reports_for_studies_never_received_are_accepted_and_ignored(
    sessions: SessionFactory, listener: ReportListener
) -> None:
    answer = exchange(listener.port, oru(accession="CT-0001"))
    assert msa(answer)[1:4] == ["AA", "MSG00001", "unknown-study"]
    with sessions() as s:
        assert s.scalars(select(Feedback)).all() == []


@pytest.mark.parametrize(
    ("message", "said"),
    [
        ("HELLO", "not an HL7 v2 message"),
        (oru(kind="ADT^A01"), "ORU R01, not ADT A01"),
        ("MSH|^~\\&|RIS||||||ORU^R01|M1|P|2.3\rPID|1\r", "no OBR"),
    ],
)
def test_what_is_no_report_is_rejected_saying_why(
    listener: ReportListener, message: str, said: str
) -> None:
    fields = msa(exchange(listener.port, message))
    assert fields[1] == "AR" and said in fields[3]


def test_only_the_named_sending_applications_are_taken(
    sessions: SessionFactory, scored: str
) -> None:
    listener = _listener(sessions, sending_applications=["RIS"])
    try:
        fields = msa(exchange(listener.port, oru(application="OTHER")))
        assert fields[1] == "AR" and "not allowed" in fields[3]
        assert msa(exchange(listener.port, oru(application="RIS")))[1] == "AA"
    finally:
        listener.stop()


def test_an_address_outside_the_allowed_networks_gets_no_answer(
    sessions: SessionFactory, scored: str
) -> None:
    listener = _listener(sessions, networks=["10.0.0.0/8"])
    try:
        assert exchange(listener.port, oru()) is None
    finally:
        listener.stop()
    with sessions() as s:
        assert s.scalars(select(Feedback)).all() == []


def test_a_frame_beyond_the_limit_ends_the_connection(sessions: SessionFactory) -> None:
    listener = _listener(sessions, max_message_kb=4)
    try:
        assert exchange(listener.port, oru(text="x" * 8000)) is None
        assert msa(exchange(listener.port, oru(accession="NONE")))[1] == "AA"  # still serving
    finally:
        listener.stop()


def test_a_database_that_cannot_take_the_report_answers_ae_so_it_is_sent_again(
    sessions: SessionFactory, scored: str
) -> None:
    def unavailable(session: object, report: object, derived: object) -> object:
        raise OperationalError("INSERT", {}, Exception("database is locked"))

    settings = ReportListenerSettings.model_validate({"enabled": True, "port": free_port()})
    listener = ReportListener(settings, sessions, take=unavailable)  # type: ignore[arg-type]
    listener.start()
    try:
        fields = msa(exchange(listener.port, oru()))
        assert fields[1] == "AE" and "send again" in fields[3]
    finally:
        listener.stop()


def test_several_messages_on_one_connection_are_each_answered(
    sessions: SessionFactory, listener: ReportListener
) -> None:
    with socket.create_connection(("127.0.0.1", listener.port), timeout=10) as sock:
        sock.sendall(frame(oru(control_id="A1", accession="X1")) + frame(oru(control_id="A2")))
        reader, answers = FrameReader(), []
        while len(answers) < 2:
            data = sock.recv(65536)
            assert data, "closed before both answers"
            answers += reader.feed(data)
    assert [msa(a)[2] for a in answers] == ["A1", "A2"]
    assert START not in b"".join(a.encode() for a in answers) and END not in answers[0].encode()


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return self_signed(tmp_path_factory.mktemp("hl7-tls"), "127.0.0.1", "IP:127.0.0.1")


def test_the_listener_speaks_mllp_in_tls(
    sessions: SessionFactory, scored: str, certificate: tuple[Path, Path]
) -> None:
    cert, key = certificate
    listener = _listener(sessions, tls={"certificate": str(cert), "key": str(key)})
    try:
        trusting = ssl.create_default_context(cafile=str(cert))
        assert msa(exchange(listener.port, oru(), context=trusting))[1] == "AA"
        # A client that does not trust the certificate gets nothing from it.
        with pytest.raises(ssl.SSLError):
            exchange(listener.port, oru(), context=ssl.create_default_context())
        # Plain MLLP to a TLS listener is not answered.
        assert exchange(listener.port, oru()) is None
    finally:
        listener.stop()


def test_the_daemon_closes_and_labels_a_study_from_its_final_report(tmp_path: Path) -> None:
    port = free_port()
    daemon = Daemon(tmp_path / "node", sections={"hl7_listener": {"enabled": True, "port": port}})
    daemon.start()
    try:
        make_dx(tmp_path / "a.dcm", rows=128, cols=128, AccessionNumber="ACC-42")
        assert storescu([tmp_path / "a.dcm"], daemon.port).returncode == 0
        wait_until(
            lambda: daemon.query("SELECT count(*) FROM results")[0][0] == 1,
            timeout=120,
            what="the image scored",
        )
        text = "FINDINGS: The lungs are clear.\nIMPRESSION: No evidence of pneumonia."
        assert msa(exchange(port, oru(accession="ACC-42", text=text)))[1:4] == [
            "AA",
            "MSG00001",
            "labelled",
        ]
        [(label, source, evidence)] = daemon.query("SELECT label, source, evidence FROM feedback")
        assert (label, source) == ("no_pneumonia", "report")
        assert "No evidence of pneumonia" in evidence
        [(closed_reason,)] = daemon.query("SELECT closed_reason FROM studies")
        assert closed_reason == "read"
    finally:
        daemon.stop()
