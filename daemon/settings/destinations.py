"""Where outputs go: a destination of each kind (DICOM, DICOMweb, HL7), one union by kind."""

from __future__ import annotations

from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, FilePath, StringConstraints, field_validator, model_validator

from daemon.settings.base import AETitle, Port, Seconds, Section, is_loopback


class DestinationTLS(Section):
    """TLS to a destination (TLS 1.2 or later); the destination's certificate is verified."""

    ca_file: FilePath | None = None  # PEM; default: the system's trusted CAs
    # This node's client certificate and key (PEM), for a destination that asks for one.
    certificate: FilePath | None = None
    key: FilePath | None = None
    check_hostname: bool = True
    server_name: str | None = None  # the name its certificate must carry; default: host

    @model_validator(mode="after")
    def _pair(self) -> DestinationTLS:
        if (self.certificate is None) != (self.key is None):
            raise ValueError("certificate and key go together")
        return self


# What a destination receives of a result: the Secondary Capture and the SR.
EVERY_OUTPUT = frozenset({"sc", "sr"})
DestinationName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]{1,32}$")]
# MSH-3 to MSH-6: an HD's namespace ID (HL7 v2.5.1 IS, at most 20 characters).
Hl7Name = Annotated[
    str, StringConstraints(strip_whitespace=True, max_length=20, pattern=r"^[A-Za-z0-9_. -]*$")
]


class Destination(Section):
    """A DICOM node that receives ChestAid's outputs (usually the PACS) by C-STORE.

    ``kind`` names the transport that delivers to it (:mod:`daemon.transports`); a
    file without it means ``"dicom"``. Each kind is a model of its own
    (:class:`DicomWebDestination` and :class:`Hl7Destination` beside this one), and
    ``destinations`` a union of them discriminated by kind.
    """

    kind: Literal["dicom"] = "dicom"
    name: DestinationName
    ae_title: AETitle
    host: str
    port: Port
    tls: DestinationTLS | None = None  # plain DICOM when absent

    @property
    def output_kinds(self) -> frozenset[str]:
        """The outputs it is sent: both."""
        return EVERY_OUTPUT


class Hl7Destination(Section):
    """A RIS (or the interface engine before it) that receives each result as HL7 v2.

    One ORU^R01 per study report, over MLLP, made from the SR (see
    :mod:`daemon.hl7.messages`); the Secondary Capture is not sent. ``raising_bands``
    are the priority bands for which the message asks for STAT (TQ1-9); by default
    URGENT, the top one of the default bands. Other bands ask for nothing, so an
    order's priority is never lowered.
    """

    kind: Literal["hl7"]
    name: DestinationName
    host: str
    port: Port
    tls: DestinationTLS | None = None  # plain MLLP when absent
    sending_application: Hl7Name = "CHESTAID"
    sending_facility: Hl7Name = ""
    receiving_application: Hl7Name = ""
    receiving_facility: Hl7Name = ""
    processing_id: Literal["P", "T", "D"] = "P"  # production, training, debugging
    # Must name priority bands (checked against [priority]); the default bands' top one.
    raising_bands: list[str] = Field(default_factory=lambda: ["URGENT"])

    @property
    def output_kinds(self) -> frozenset[str]:
        """The outputs it is sent: the SR, from which the message is made."""
        return frozenset({"sr"})


class BasicAuth(Section):
    """HTTP basic authentication; the password is the content of ``password_file``."""

    type: Literal["basic"]
    username: Annotated[str, StringConstraints(min_length=1, max_length=256, pattern=r"^[^:]+$")]
    password_file: FilePath


class BearerAuth(Section):
    """A bearer token (``Authorization: Bearer ...``), the content of ``token_file``."""

    type: Literal["bearer"]
    token_file: FilePath


class DicomWebDestination(Section):
    """A DICOMweb service that receives ChestAid's outputs by STOW-RS (a VNA, a cloud PACS).

    ``url`` is the service's root, the part before ``/studies`` (for Orthanc,
    ``http://host:8042/dicom-web``). Beyond loopback it must be ``https``: outputs carry
    patient data and the credentials go with every request. ``allow_plain_http``
    lifts that for a site whose network already protects the path (its own choice).
    Over https the service's certificate is always verified (:mod:`daemon.tls`, TLS 1.2
    or later), against ``tls.ca_file`` or the system's CAs.

    Secrets are never written in this file: ``auth`` names a file holding the password
    or token, readable by the daemon's user only. The file must exist at start; it is
    read when each delivery round opens its session, so a replaced secret takes effect
    without a restart, and an admin command run by another user (who cannot read it)
    still loads these settings. An unreadable or empty file fails the round's
    deliveries, retried, with an error naming the key.
    """

    kind: Literal["dicomweb"]
    name: DestinationName
    url: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)]
    auth: Annotated[BasicAuth | BearerAuth, Field(discriminator="type")] | None = None
    tls: DestinationTLS | None = None  # https only; default: the system's CAs
    allow_plain_http: bool = False
    # Seconds to connect, and to wait for each answer; default: node.network_timeout.
    timeout_seconds: Seconds | None = None

    @field_validator("url")
    @classmethod
    def _service_url(cls, value: str) -> str:
        try:
            parts = urlsplit(value)
            parts.port  # noqa: B018 - raises on a port that is not a number in range
        except ValueError as exc:
            raise ValueError(f"not a valid URL: {exc}") from exc
        if parts.scheme.lower() not in ("http", "https"):
            raise ValueError(f"the URL must be http or https, not {parts.scheme or 'relative'!r}")
        if not parts.hostname:
            raise ValueError("the URL names no host")
        if parts.username is not None or parts.password is not None:
            raise ValueError("credentials do not go in the URL; use the auth table")
        if parts.query or parts.fragment:
            raise ValueError("the service root takes no query or fragment")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _protected_beyond_loopback(self) -> DicomWebDestination:
        parts = urlsplit(self.url)
        https = parts.scheme.lower() == "https"
        if self.tls is not None and not https:
            raise ValueError("tls needs an https url")
        if not https and not self.allow_plain_http and not is_loopback(parts.hostname or ""):
            raise ValueError(
                f"url is plain http to {parts.hostname}, which would carry patient data and "
                "credentials in clear; use https (or set allow_plain_http = true where the "
                "network protects the path)"
            )
        return self

    @property
    def https(self) -> bool:
        """Whether the service is called over TLS."""
        return urlsplit(self.url).scheme.lower() == "https"

    @property
    def output_kinds(self) -> frozenset[str]:
        """The outputs it is sent: both."""
        return EVERY_OUTPUT


AUTH_TYPES = ("basic", "bearer")
# The kinds of destination; a table without ``kind`` is a DICOM node.
DESTINATION_KINDS = ("dicom", "dicomweb", "hl7")
AnyDestination = Annotated[
    Destination | DicomWebDestination | Hl7Destination, Field(discriminator="kind")
]
