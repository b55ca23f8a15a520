"""The transport registry: destination kinds in the settings, and one transport per kind."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from chestaid.errors import ConfigurationError
from daemon.settings import Destination, NodeSettings, SenderSettings, load_settings
from daemon.transports import Transport, TransportSession, kinds, register, transport_for
from daemon.transports.dicom import DicomTransport

DICOM_DESTINATION = "[[destinations]]\nname = 'pacs'\nae_title = 'PACS'\nhost = 'x'\nport = 104\n"


def _load(tmp_path: Path, text: str) -> list[Destination]:
    path = tmp_path / "chestaid.toml"
    path.write_text(text, encoding="utf-8")
    return load_settings(path).destinations


def test_a_destination_without_a_kind_is_a_dicom_node(tmp_path: Path) -> None:
    [pacs] = _load(tmp_path, DICOM_DESTINATION)
    assert pacs.kind == "dicom" and pacs.ae_title == "PACS"
    assert transport_for(pacs.kind) is DicomTransport
    [named] = _load(tmp_path, DICOM_DESTINATION + "kind = 'dicom'\n")
    assert named == pacs


def test_an_unknown_kind_is_refused_at_start_naming_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"destinations\[0\]\.kind.*'fax'"):
        _load(tmp_path, DICOM_DESTINATION + "kind = 'fax'\n")


def test_a_kind_without_a_transport_is_a_configuration_error() -> None:
    assert "dicom" in kinds()
    with pytest.raises(ConfigurationError, match=r"'carrier-pigeon'.*known: .*dicom"):
        transport_for("carrier-pigeon")


@dataclass(frozen=True)
class _Nowhere:
    name: str
    kind: str = "test-nowhere"


class _NowhereTransport(Transport[_Nowhere]):
    def open(self, destination: _Nowhere) -> TransportSession:
        raise NotImplementedError


def test_a_kind_has_one_transport() -> None:
    register("test-nowhere")(_NowhereTransport)
    register("test-nowhere")(_NowhereTransport)  # the same class again is no change
    assert transport_for("test-nowhere") is _NowhereTransport
    with pytest.raises(ValueError, match="already the transport for 'dicom'"):
        register("dicom")(_NowhereTransport)
    assert transport_for("dicom") is DicomTransport


def test_the_dicom_transport_calls_with_the_configured_identity() -> None:
    node = NodeSettings(ae_title="CHESTAID", max_pdu_bytes=65536, dimse_timeout=7)
    transport = DicomTransport(node=node, settings=SenderSettings(calling_ae_title="CHESTOUT"))
    assert transport.ae.ae_title == "CHESTOUT"
    assert transport.ae.maximum_pdu_size == 65536 and transport.ae.dimse_timeout == 7
    assert len(transport.ae.requested_contexts) == 2
