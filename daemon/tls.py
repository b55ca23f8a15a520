"""TLS for DICOM associations: DICOM's non-downgrading BCP 195 profile (PS3.15 Annex B).

Both directions allow TLS 1.2 and 1.3 only, and in TLS 1.2 only forward-secret AEAD
cipher suites (ECDHE or DHE with AES-GCM or ChaCha20-Poly1305; RFC 9325 4.2); every
TLS 1.3 suite is of that kind. Older versions and weaker suites are refused, never
negotiated down to.

The SCP's context does its handshake in the association's thread, bounded by the
node's network timeout, not in the thread that accepts connections (where pynetdicom
would do it): a client that connects and never says hello would otherwise stop the
node from accepting anyone else.
"""

from __future__ import annotations

import socket
import ssl
from typing import Any

from chestaid.errors import ConfigurationError
from daemon.settings import DestinationTLS, NodeSettings, NodeTLS

MINIMUM_VERSION = ssl.TLSVersion.TLSv1_2
# TLS 1.2 suites (OpenSSL names); TLS 1.3 suites are configured apart and all strong.
CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:DHE+CHACHA20:!aNULL:!eNULL"


class _DeferredHandshakeContext(ssl.SSLContext):
    """A server context whose sockets shake hands on first use, with a timeout."""

    handshake_timeout: float = 60.0

    def wrap_socket(
        self,
        sock: socket.socket,
        server_side: bool = False,
        do_handshake_on_connect: bool = True,
        suppress_ragged_eofs: bool = True,
        server_hostname: str | bytes | None = None,
        session: ssl.SSLSession | None = None,
    ) -> ssl.SSLSocket:
        # The first read in the association's thread shakes hands; the timeout bounds a
        # peer that stalls there (and, after, in the middle of a PDU).
        sock.settimeout(self.handshake_timeout)
        return super().wrap_socket(
            sock,
            server_side=server_side,
            do_handshake_on_connect=False,
            suppress_ragged_eofs=suppress_ragged_eofs,
            server_hostname=server_hostname,
            session=session,
        )


class _ClientSocket(ssl.SSLSocket):
    """Remembers on its context why the handshake failed (pynetdicom logs it and goes on)."""

    def connect(self, addr: Any) -> None:
        try:
            super().connect(addr)
        except ssl.SSLError as exc:
            if isinstance(self.context, ClientContext):
                self.context.last_failure = str(exc)
            raise


class ClientContext(ssl.SSLContext):
    """The sender's context to one destination; ``last_failure`` is its last handshake error."""

    sslsocket_class = _ClientSocket
    last_failure: str | None = None


def _harden(context: ssl.SSLContext) -> None:
    context.minimum_version = MINIMUM_VERSION
    context.set_ciphers(CIPHERS)
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION


def node_context(node: NodeSettings) -> ssl.SSLContext | None:
    """The SCP's TLS context, or None when the node has no ``tls`` section.

    Raises:
        ConfigurationError: the certificate, key or CA file cannot be used.
    """
    if node.tls is None:
        return None
    return server_context(node.tls, handshake_timeout=node.network_timeout)


def server_context(
    tls: NodeTLS, *, handshake_timeout: float, where: str = "node.tls"
) -> ssl.SSLContext:
    """A listener's TLS context (the SCP's, or the HL7 listener's) from its ``tls`` settings.

    Args:
        tls: the listener's certificate, key and optional client CAs.
        handshake_timeout: seconds a client may take over the handshake (and, after it,
            between the pieces of a read).
        where: the settings key, for messages.

    Raises:
        ConfigurationError: the certificate, key or CA file cannot be used.
    """
    context = _DeferredHandshakeContext(ssl.PROTOCOL_TLS_SERVER)
    context.handshake_timeout = handshake_timeout
    _harden(context)
    try:
        context.load_cert_chain(tls.certificate, tls.key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigurationError(f"{where}.certificate/key cannot be used: {exc}") from exc
    if tls.client_ca_file is not None:
        try:
            context.load_verify_locations(cafile=tls.client_ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigurationError(f"{where}.client_ca_file cannot be used: {exc}") from exc
        context.verify_mode = (
            ssl.CERT_REQUIRED if tls.require_client_certificate else ssl.CERT_OPTIONAL
        )
    return context


def client_context(tls: DestinationTLS, *, where: str) -> ClientContext:
    """The sender's TLS context for one destination.

    Args:
        tls: the destination's CAs, this node's optional client certificate, and
            whether the destination's name is checked against its certificate.
        where: the settings key, for messages (``destinations[pacs].tls``).

    Raises:
        ConfigurationError: a certificate, key or CA file cannot be used.
    """
    context = ClientContext(ssl.PROTOCOL_TLS_CLIENT)
    _harden(context)
    context.check_hostname = tls.check_hostname
    context.verify_mode = ssl.CERT_REQUIRED
    try:
        if tls.ca_file is not None:
            context.load_verify_locations(cafile=tls.ca_file)
        else:
            context.load_default_certs(ssl.Purpose.SERVER_AUTH)
        if tls.certificate is not None and tls.key is not None:
            context.load_cert_chain(tls.certificate, tls.key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigurationError(f"{where} cannot be used: {exc}") from exc
    return context
