"""TLS settings and contexts: bad settings name their key, contexts never go below TLS 1.2."""

from __future__ import annotations

import ssl
import subprocess
from pathlib import Path

import pytest

from chestaid.errors import ConfigurationError
from daemon.settings import DestinationTLS, NodeTLS, load_settings
from daemon.tls import client_context, server_context
from tests.dicom_factory import require_tool


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate and its key, made now."""
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "node.pem", directory / "node.key"
    subprocess.run(
        [require_tool("openssl", "openssl"), "req", "-x509", "-newkey", "rsa:2048", "-noenc",
         "-days", "1", "-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost"],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


def _load(tmp_path: Path, text: str) -> None:
    path = tmp_path / "chestaid.toml"
    path.write_text(text, encoding="utf-8")
    load_settings(path)


def test_a_required_client_certificate_needs_a_client_ca(
    tmp_path: Path, pair: tuple[Path, Path]
) -> None:
    with pytest.raises(ConfigurationError, match=r"node\.tls.*client_ca_file"):
        _load(
            tmp_path,
            f'[node.tls]\ncertificate = "{pair[0]}"\nkey = "{pair[1]}"\n'
            "require_client_certificate = true\n",
        )


def test_a_missing_certificate_file_is_named(tmp_path: Path, pair: tuple[Path, Path]) -> None:
    with pytest.raises(ConfigurationError, match=r"node\.tls\.certificate"):
        _load(tmp_path, f'[node.tls]\ncertificate = "{tmp_path / "no.pem"}"\nkey = "{pair[1]}"\n')


def test_a_destination_certificate_needs_its_key(tmp_path: Path, pair: tuple[Path, Path]) -> None:
    with pytest.raises(ConfigurationError, match=r"destinations\[0\]\.tls.*go together"):
        _load(
            tmp_path,
            '[[destinations]]\nname = "pacs"\nae_title = "PACS"\nhost = "h"\nport = 104\n'
            f'tls = {{certificate = "{pair[0]}"}}\n',
        )


def test_the_server_context_refuses_versions_below_1_2_and_weak_suites(
    pair: tuple[Path, Path],
) -> None:
    context = server_context(NodeTLS(certificate=pair[0], key=pair[1]), handshake_timeout=5)
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert context.verify_mode == ssl.CERT_NONE  # no client CA: no client certificate asked
    for suite in context.get_ciphers():
        if suite["protocol"] == "TLSv1.2":
            assert suite["kea"] in {"kx-ecdhe", "kx-dhe"}, suite["name"]
            assert suite["aead"], suite["name"]


def test_a_client_ca_asks_for_client_certificates(pair: tuple[Path, Path]) -> None:
    optional = NodeTLS(certificate=pair[0], key=pair[1], client_ca_file=pair[0])
    assert server_context(optional, handshake_timeout=5).verify_mode == ssl.CERT_OPTIONAL
    required = optional.model_copy(update={"require_client_certificate": True})
    assert server_context(required, handshake_timeout=5).verify_mode == ssl.CERT_REQUIRED


def test_a_key_that_is_not_the_certificates_is_a_configuration_error(
    tmp_path: Path, pair: tuple[Path, Path]
) -> None:
    bad = tmp_path / "bad.key"
    bad.write_text("not a key\n", encoding="utf-8")
    with pytest.raises(ConfigurationError, match=r"node\.tls"):
        server_context(NodeTLS(certificate=pair[0], key=bad), handshake_timeout=5)
    with pytest.raises(ConfigurationError, match=r"destinations\[pacs\]\.tls"):
        client_context(
            DestinationTLS(ca_file=pair[0], certificate=pair[0], key=bad),
            where="destinations[pacs].tls",
        )


def test_the_client_context_verifies_the_destination(pair: tuple[Path, Path]) -> None:
    context = client_context(DestinationTLS(ca_file=pair[0]), where="d")
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    unchecked = client_context(DestinationTLS(ca_file=pair[0], check_hostname=False), where="d")
    assert not unchecked.check_hostname
