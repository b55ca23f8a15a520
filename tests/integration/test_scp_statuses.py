"""The SCP in process on a loopback port, driven by a pynetdicom SCU: each C-STORE
answer, the association rules, and what ends up in the spool and the database."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE
from pynetdicom.transport import ThreadedAssociationServer

from daemon.db.session import SessionFactory
from daemon.scp import VERIFICATION, StoreHandler, build_ae, handlers
from daemon.settings import AllowSettings, NodeSettings
from daemon.spool import FileStore
from tests.daemon_harness import free_port
from tests.dicom_factory import make_dx

pytestmark = pytest.mark.integration

DX = "1.2.840.10008.5.1.4.1.1.1.1"
CT = "1.2.840.10008.5.1.4.1.1.2"


@dataclass
class Node:
    port: int
    handler: StoreHandler
    server: ThreadedAssociationServer
    spool: Path


@pytest.fixture
def node(tmp_path: Path, sessions: SessionFactory) -> Iterator[Node]:
    settings = NodeSettings(port=free_port(), max_pdu_bytes=65536)
    spool = tmp_path / "spool"
    handler = StoreHandler(
        spool=FileStore(spool),
        sessions=sessions,
        allow=AllowSettings(calling_ae_titles=["MODALITY"], networks=["127.0.0.0/8"]),
    )
    server = build_ae(settings).start_server(
        ("127.0.0.1", settings.port), block=False, evt_handlers=handlers(handler)
    )
    yield Node(settings.port, handler, server, spool)
    server.shutdown()


def _associate(node: Node, *, calling: str = "MODALITY", called: str = "CHESTAID") -> AE:
    ae = AE(ae_title=calling)
    ae.add_requested_context(DX, ExplicitVRLittleEndian)
    ae.add_requested_context(CT, ExplicitVRLittleEndian)
    ae.add_requested_context(VERIFICATION)
    return ae


def _send(node: Node, ds: pydicom.Dataset) -> int:
    ae = _associate(node)
    assoc = ae.associate("127.0.0.1", node.port, ae_title="CHESTAID")
    assert assoc.is_established
    try:
        return int(assoc.send_c_store(ds).Status)
    finally:
        assoc.release()


def _files(node: Node) -> list[Path]:
    return [p for p in node.spool.rglob("*.dcm") if ".incoming" not in p.parts]


def _rows(sessions: SessionFactory, sql: str) -> list[tuple[object, ...]]:
    from sqlalchemy import text

    with sessions() as s:
        return [tuple(r) for r in s.execute(text(sql)).all()]


def test_stored_bytes_are_what_was_sent_and_a_second_copy_is_not_kept(
    node: Node, sessions: SessionFactory
) -> None:
    ds = make_dx(rows=64, cols=64)
    assert _send(node, ds) == 0x0000
    assert _send(node, ds) == 0x0000  # the same SOP Instance UID again: success, kept once
    files = _files(node)
    assert len(files) == 1
    back = pydicom.dcmread(files[0])
    assert back.SOPInstanceUID == ds.SOPInstanceUID
    assert back.PixelData == ds.PixelData
    assert back.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert ds.SOPInstanceUID not in str(files[0])  # the name is ChestAid's, not a UID
    assert _rows(sessions, "SELECT count(*) FROM instances") == [(1,)]
    assert _rows(
        sessions,
        "SELECT state, calling_ae_title FROM jobs JOIN instances i ON i.id = jobs.instance_id",
    ) == [("queued", "MODALITY")]


def test_a_dataset_without_its_study_uid_does_not_match(
    node: Node, sessions: SessionFactory
) -> None:
    ds = make_dx(rows=64, cols=64)
    del ds.StudyInstanceUID
    assert _send(node, ds) == 0xA900
    assert _files(node) == []
    assert _rows(sessions, "SELECT count(*) FROM instances") == [(0,)]


def test_a_stopping_node_refuses_late_stores(node: Node, sessions: SessionFactory) -> None:
    node.handler.draining.set()
    assert _send(node, make_dx(rows=64, cols=64)) == 0xA700
    assert _files(node) == []


def test_association_rules(node: Node) -> None:
    ae = _associate(node)
    assoc = ae.associate("127.0.0.1", node.port, ae_title="CHESTAID")
    assert assoc.is_established
    accepted = {cx.abstract_syntax for cx in assoc.accepted_contexts}
    assert DX in accepted and VERIFICATION in accepted and CT not in accepted
    assert assoc.acceptor.maximum_length == 65536  # the configured PDU limit, never unlimited
    assert int(assoc.send_c_echo().Status) == 0x0000
    assoc.release()

    wrong_caller = _associate(node, calling="INTRUDER").associate(
        "127.0.0.1", node.port, ae_title="CHESTAID"
    )
    assert wrong_caller.is_rejected
    wrong_called = _associate(node).associate("127.0.0.1", node.port, ae_title="NOTCHESTAID")
    assert wrong_called.is_rejected


def test_a_received_study_keeps_its_identifying_fields_bounded_and_never_logs_them(
    node: Node, sessions: SessionFactory, caplog: pytest.LogCaptureFixture
) -> None:
    # A family name longer than PN allows: a warning about it (pydicom's) must not quote it.
    name, patient_id, accession = "Zyxwquorth" * 7 + "^Ottoline", "PIDQ7731", "ACCZ99281"
    ds = make_dx(
        rows=64,
        cols=64,
        PatientName=name,
        PatientID=patient_id,
        AccessionNumber=accession,
        PatientAge="047Y",
        PatientSex="F",
        StudyDescription="CHEST PA " + "X" * 80,  # longer than kept: cut to 64
    )
    with caplog.at_level(logging.DEBUG):
        assert _send(node, ds) == 0x0000
    assert "instance received" in caplog.text  # the log was captured
    for value in ("Zyxwquorth", "Ottoline", patient_id, accession):
        assert value not in caplog.text
    rows = _rows(
        sessions,
        "SELECT patient_name, patient_id, accession_number, study_date, patient_age, "
        "patient_sex, length(study_description), modality, images, listed FROM studies",
    )
    assert rows == [(name[:64], patient_id, accession, "20260101", "047Y", "F", 64, "DX", 0, 0)]
