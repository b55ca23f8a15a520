"""DICOM TLS with real peers: DCMTK's storescu/echoscu into the SCP, the sender into
DCMTK's storescp, and what is refused (plain DICOM on the TLS port, TLS 1.1, a client
without a certificate when one is required, a destination whose name does not match).

The certificates are made here, with openssl, for each test module: a throwaway CA,
a server certificate for localhost/127.0.0.1, a client certificate, and a client
certificate from a CA nobody trusts.
"""

from __future__ import annotations

import socket
import ssl
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.daemon_harness import Daemon, free_port, storescu, wait_until
from tests.dicom_factory import make_dx, require_tool

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    rogue_cert: Path  # a client certificate signed by another CA
    rogue_key: Path


def _openssl(*args: str | Path) -> None:
    tool = require_tool("openssl", "openssl")
    subprocess.run([tool, *map(str, args)], check=True, capture_output=True)


def _ca(directory: Path, name: str) -> tuple[Path, Path]:
    cert, key = directory / f"{name}.pem", directory / f"{name}.key"
    _openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-noenc", "-days", "2",
        "-keyout", key, "-out", cert, "-subj", f"/CN={name}",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip
    return cert, key


def _leaf(
    directory: Path, name: str, ca: tuple[Path, Path], extensions: Sequence[str]
) -> tuple[Path, Path]:
    cert, key = directory / f"{name}.pem", directory / f"{name}.key"
    added: list[str] = []
    for extension in ("basicConstraints=CA:FALSE", *extensions):
        added += ["-addext", extension]
    _openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-noenc", "-days", "2",
        "-CA", ca[0], "-CAkey", ca[1],
        "-keyout", key, "-out", cert, "-subj", f"/CN={name}", *added,
    )  # fmt: skip
    return cert, key


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("pki")
    ca = _ca(directory, "hospital-ca")
    server = _leaf(
        directory,
        "localhost",
        ca,
        ["subjectAltName=DNS:localhost,IP:127.0.0.1", "extendedKeyUsage=serverAuth"],
    )
    client = _leaf(directory, "modality", ca, ["extendedKeyUsage=clientAuth"])
    rogue = _leaf(directory, "rogue", _ca(directory, "rogue-ca"), ["extendedKeyUsage=clientAuth"])
    return Pki(ca[0], server[0], server[1], client[0], client[1], rogue[0], rogue[1])


def _tls_daemon(root: Path, pki: Pki, **tls: Any) -> Daemon:
    node_tls = {"certificate": str(pki.server_cert), "key": str(pki.server_key), **tls}
    return Daemon(root, sections={"node": {"tls": node_tls}})


@pytest.fixture
def tls_daemon(tmp_path: Path, pki: Pki) -> Iterator[Daemon]:
    d = _tls_daemon(tmp_path / "node", pki)
    d.start(roles="scp")
    yield d
    d.stop()


def _dx(tmp_path: Path, name: str = "x.dcm") -> Path:
    path = tmp_path / name
    make_dx(path)
    return path


def _client_tls(pki: Pki, *, cert: Path | None = None, key: Path | None = None) -> list[str]:
    """storescu/echoscu options: TLS verifying the node against the CA, with a certificate."""
    identity = ["+tls", str(key), str(cert)] if cert is not None else ["+tla"]
    return [*identity, "+cf", str(pki.ca)]


def _instances(daemon: Daemon) -> int:
    return int(daemon.query("SELECT count(*) FROM instances")[0][0])


def test_storescu_over_tls_is_stored_and_queued(
    tmp_path: Path, pki: Pki, tls_daemon: Daemon
) -> None:
    echoscu = require_tool("echoscu", "dcmtk")
    echo = subprocess.run(
        [echoscu, "-aec", "CHESTAID", *_client_tls(pki), "127.0.0.1", str(tls_daemon.port)],
        capture_output=True,
        text=True,
    )
    assert echo.returncode == 0, echo.stdout + echo.stderr
    sent = storescu([_dx(tmp_path)], tls_daemon.port, extra=_client_tls(pki))
    assert sent.returncode == 0, sent.stdout + sent.stderr
    assert "Received Store Response (Success)" in sent.stdout + sent.stderr
    assert tls_daemon.query("SELECT state FROM jobs") == [("queued",)]


def test_a_plain_association_to_the_tls_port_fails(
    tmp_path: Path, pki: Pki, tls_daemon: Daemon
) -> None:
    plain = storescu([_dx(tmp_path)], tls_daemon.port)
    assert plain.returncode != 0
    assert _instances(tls_daemon) == 0
    # The node is still serving TLS clients.
    sent = storescu([_dx(tmp_path)], tls_daemon.port, extra=_client_tls(pki))
    assert sent.returncode == 0, sent.stdout + sent.stderr
    assert _instances(tls_daemon) == 1


def test_a_tls_1_1_client_is_refused(tmp_path: Path, pki: Pki, tls_daemon: Daemon) -> None:
    old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    old.check_hostname = False
    old.verify_mode = ssl.CERT_NONE
    old.minimum_version = ssl.TLSVersion.TLSv1
    old.maximum_version = ssl.TLSVersion.TLSv1_1
    old.set_ciphers("DEFAULT:@SECLEVEL=0")  # so this client can offer TLS 1.1 at all
    with (
        socket.create_connection(("127.0.0.1", tls_daemon.port), timeout=30) as raw,
        pytest.raises(ssl.SSLError) as refused,
    ):
        old.wrap_socket(raw, server_hostname="localhost")
    # The node's alert, not this client's own refusal to offer the version.
    assert refused.value.reason == "TLSV1_ALERT_PROTOCOL_VERSION"
    sent = storescu([_dx(tmp_path)], tls_daemon.port, extra=_client_tls(pki))
    assert sent.returncode == 0, sent.stdout + sent.stderr


def test_a_silent_client_on_the_tls_port_does_not_stop_others(
    tmp_path: Path, pki: Pki, tls_daemon: Daemon
) -> None:
    # Connects and never sends a ClientHello: another client is still served meanwhile.
    with socket.create_connection(("127.0.0.1", tls_daemon.port)):
        sent = storescu([_dx(tmp_path)], tls_daemon.port, extra=_client_tls(pki), timeout=90)
        assert sent.returncode == 0, sent.stdout + sent.stderr
        assert _instances(tls_daemon) == 1


def test_with_client_certificates_required_only_a_client_with_a_trusted_one_gets_in(
    tmp_path: Path, pki: Pki
) -> None:
    d = _tls_daemon(
        tmp_path / "node", pki, client_ca_file=str(pki.ca), require_client_certificate=True
    )
    d.start(roles="scp")
    try:
        anonymous = storescu([_dx(tmp_path)], d.port, extra=_client_tls(pki))
        assert anonymous.returncode != 0
        rogue = storescu(
            [_dx(tmp_path)],
            d.port,
            extra=_client_tls(pki, cert=pki.rogue_cert, key=pki.rogue_key),
        )
        assert rogue.returncode != 0
        assert _instances(d) == 0
        trusted = storescu(
            [_dx(tmp_path)],
            d.port,
            extra=_client_tls(pki, cert=pki.client_cert, key=pki.client_key),
        )
        assert trusted.returncode == 0, trusted.stdout + trusted.stderr
        assert _instances(d) == 1
    finally:
        d.stop()


@dataclass
class TlsStoreSCP:
    """DCMTK's storescp in TLS mode; it requires and verifies the caller's certificate."""

    directory: Path
    pki: Pki
    port: int
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> TlsStoreSCP:
        storescp = require_tool("storescp", "dcmtk")
        echoscu = require_tool("echoscu", "dcmtk")
        self.directory.mkdir(parents=True, exist_ok=True)
        pki = self.pki
        self.process = subprocess.Popen(
            [storescp, "-aet", "PACS", "-od", str(self.directory), "-uf",
             "+tls", str(pki.server_key), str(pki.server_cert), "+cf", str(pki.ca),
             str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        identity = _client_tls(pki, cert=pki.client_cert, key=pki.client_key)
        command = [echoscu, "-aec", "PACS", *identity, "127.0.0.1", str(self.port)]
        wait_until(
            lambda: subprocess.run(command, capture_output=True).returncode == 0,
            timeout=30,
            what="storescp to answer C-ECHO over TLS",
        )
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None


def test_the_sender_delivers_over_tls_and_checks_the_destination_name(
    tmp_path: Path, pki: Pki
) -> None:
    pacs = TlsStoreSCP(tmp_path / "pacs", pki, free_port()).start()
    tls = {
        "ca_file": str(pki.ca),
        "certificate": str(pki.client_cert),
        "key": str(pki.client_key),
    }
    where = {"ae_title": "PACS", "host": "127.0.0.1", "port": pacs.port}
    daemon = Daemon(
        tmp_path / "node",
        destinations=[
            {"name": "pacs", **where, "tls": tls},
            # The same PACS expected under another name: its certificate does not match.
            {"name": "elsewhere", **where, "tls": {**tls, "server_name": "pacs.example.org"}},
        ],
    )
    daemon.start()
    try:
        assert storescu([_dx(tmp_path)], daemon.port).returncode == 0
        delivered = (
            "SELECT count(*) FROM deliveries WHERE destination = 'pacs' AND state = 'delivered'"
        )
        wait_until(
            lambda: daemon.query(delivered) == [(2,)],
            timeout=120,
            what="both outputs delivered to the PACS over TLS",
        )
        assert len([p for p in pacs.directory.iterdir() if p.is_file()]) == 2
        errors = wait_until(
            lambda: daemon.query(
                "SELECT last_error FROM deliveries WHERE destination = 'elsewhere'"
                " AND last_error IS NOT NULL"
            ),
            timeout=60,
            what="a failed attempt to the misnamed destination",
        )
        assert all("certificate verify failed" in e for (e,) in errors), errors
        assert daemon.query(
            "SELECT count(*) FROM deliveries WHERE destination = 'elsewhere'"
            " AND state = 'delivered'"
        ) == [(0,)]
    finally:
        daemon.stop()
        pacs.stop()
