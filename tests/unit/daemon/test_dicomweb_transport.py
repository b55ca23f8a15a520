"""The dicomweb transport's parts that need no peer: what an answer means, and the session."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
from pydicom import Dataset
from requests.auth import HTTPBasicAuth

from daemon.errors import DeliveryError
from daemon.settings import DicomWebDestination, NodeSettings, SenderSettings
from daemon.transports import PermanentFailure, Stored, TransientFailure, transport_for
from daemon.transports.dicomweb import DicomWebTransport
from daemon.transports.stow import failure_is_permanent, stow_outcome

UID = "1.2.3.4"


def _answer(sequence: str, uid: str = UID, **reason: int) -> Dataset:
    item = Dataset()
    item.ReferencedSOPInstanceUID = uid
    for keyword, value in reason.items():
        setattr(item, keyword, value)
    answer = Dataset()
    setattr(answer, sequence, [item])
    return answer


def _outcome(status: int, answer: Dataset | None = None) -> object:
    return stow_outcome(status, answer, sop_instance_uid=UID, where="vna")


def test_success_and_warnings_are_stored() -> None:
    assert _outcome(200) == Stored(0)
    assert _outcome(200, _answer("ReferencedSOPSequence")) == Stored(0)
    assert _outcome(202, _answer("ReferencedSOPSequence", WarningReason=0xB000)) == Stored(0xB000)


def test_a_failure_reason_for_our_instance_decides() -> None:
    refused = _outcome(409, _answer("FailedSOPSequence", FailureReason=0xA900))
    assert refused == PermanentFailure(
        "HTTP 409 from vna: the object was refused, reason 0xA900", 0xA900
    )
    full = _outcome(202, _answer("FailedSOPSequence", FailureReason=0xA700))
    assert isinstance(full, TransientFailure) and full.status == 0xA700
    # The service holds an instance with our UID already: sent before, not recorded.
    assert _outcome(409, _answer("FailedSOPSequence", FailureReason=0x0111)) == Stored(0x0111)
    # Another instance's failure is not ours.
    other = _answer("FailedSOPSequence", uid="9.9", FailureReason=0xA900)
    assert _outcome(202, other) == Stored(0)


@pytest.mark.parametrize("reason", [0xA900, 0xA9FF, 0xC000, 0xC122, 0x0122])
def test_reasons_the_object_itself_causes_are_permanent(reason: int) -> None:
    assert failure_is_permanent(reason)


@pytest.mark.parametrize("reason", [0xA700, 0xA7FF, 0x0110, 0x0124, 0x0272])
def test_reasons_that_pass_are_transient(reason: int) -> None:
    assert not failure_is_permanent(reason)


@pytest.mark.parametrize("status", [400, 409, 413, 415, 422])
def test_content_refusals_are_permanent(status: int) -> None:
    outcome = _outcome(status)
    assert isinstance(outcome, PermanentFailure) and f"HTTP {status}" in outcome.error


@pytest.mark.parametrize("status", [401, 403, 404, 405, 407, 408, 429, 500, 502, 503, 504])
def test_credentials_urls_and_server_trouble_are_transient(status: int) -> None:
    outcome = _outcome(status)
    assert isinstance(outcome, TransientFailure) and f"HTTP {status}" in outcome.error
    assert ("credentials" in outcome.error) == (status in (401, 403, 407))


def _destination(tmp_path: Path, url: str, **extra: object) -> DicomWebDestination:
    return DicomWebDestination.model_validate(
        {"kind": "dicomweb", "name": "vna", "url": url, **extra}
    )


def _transport() -> DicomWebTransport:
    return DicomWebTransport(node=NodeSettings(network_timeout=7), settings=SenderSettings())


def test_the_kind_is_registered() -> None:
    assert transport_for("dicomweb") is DicomWebTransport


def test_a_session_carries_the_credentials_read_when_it_opens(tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text("first\n", encoding="utf-8")
    auth = {"type": "basic", "username": "chestaid", "password_file": str(secret)}
    destination = _destination(tmp_path, "http://127.0.0.1:8042/dicom-web", auth=auth)
    transport = _transport()
    with transport.open(destination) as session:
        assert session.http.auth == HTTPBasicAuth("chestaid", "first")
        assert not session.http.trust_env  # no proxy or .netrc from the environment
        assert session.client._timeout == 7
    # A replaced password file is used from the next session on.
    secret.write_text("second\n", encoding="utf-8")
    with transport.open(destination) as session:
        assert session.http.auth == HTTPBasicAuth("chestaid", "second")
    # Emptied or gone after the start: this round's deliveries fail, naming the key.
    secret.write_text("\n", encoding="utf-8")
    with pytest.raises(DeliveryError, match=r"destinations\[vna\]\.auth\.password_file is empty"):
        transport.open(destination)
    secret.unlink()
    with pytest.raises(DeliveryError, match=r"destinations\[vna\]\.auth\.password_file cannot"):
        transport.open(destination)


def test_https_goes_through_the_nodes_hardened_tls_context(tmp_path: Path) -> None:
    transport = _transport()
    destination = _destination(
        tmp_path, "https://vna.example.org/dicom-web", tls={"server_name": "vna.internal"}
    )
    with transport.open(destination) as session:
        pool = session.http.get_adapter("https://vna.example.org/").poolmanager
        context = pool.connection_pool_kw["ssl_context"]
        assert isinstance(context, ssl.SSLContext)
        assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
        assert context.minimum_version == ssl.TLSVersion.TLSv1_2
        assert pool.connection_pool_kw["server_hostname"] == "vna.internal"
