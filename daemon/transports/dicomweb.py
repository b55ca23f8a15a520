"""The DICOMweb transport: outputs stored by STOW-RS, one instance per request.

Each delivery round opens one HTTP session per destination (its connections kept
alive across the round's objects) and posts every output to ``{url}/studies`` with
dicomweb-client. The answer is judged by :func:`daemon.transports.stow.stow_outcome`.

The session is built from the destination's settings alone: no proxy, CA bundle or
``.netrc`` from the environment. The password or token is read from its file when the
session opens, so a replaced file takes effect in the next round without a restart.
Over https the service's certificate is verified by the same TLS context the DICOM
transport uses (:func:`daemon.tls.client_context`: TLS 1.2 or later, forward-secret
suites), against ``tls.ca_file`` or the system's CAs, with this node's client
certificate when one is set.

dicomweb-client's own retries are off: the sender retries with its backoff, and a
request that waited inside the client would hold the whole round. Bodies go in one
piece with a Content-Length (outputs are a few megabytes), which every server and
reverse proxy takes, where chunked uploads are not always accepted. After a
connection failure or a timeout the rest of the round's objects are not tried: each
would wait as long again for the same answer.
"""

from __future__ import annotations

import logging
import ssl
from pathlib import Path
from typing import Any

import requests
from dicomweb_client import DICOMwebClient
from pydicom import Dataset, dcmread
from pydicom.errors import InvalidDicomError
from requests.adapters import HTTPAdapter
from requests.auth import AuthBase, HTTPBasicAuth

from chestaid.errors import ConfigurationError
from daemon.errors import DeliveryError
from daemon.settings import (
    BasicAuth,
    BearerAuth,
    DestinationTLS,
    DicomWebDestination,
    NodeSettings,
    SenderSettings,
)
from daemon.tls import client_context
from daemon.transports.base import (
    Outcome,
    TransientFailure,
    Transport,
    TransportSession,
    register,
)
from daemon.transports.stow import stow_outcome

logger = logging.getLogger(__name__)

# Larger than any output: dicomweb-client sends a body in one piece below this size.
ONE_PIECE_BYTES = 1 << 30
ANSWER_MEDIA_TYPE = "application/dicom+json"


class _BearerToken(AuthBase):
    """``Authorization: Bearer <token>`` on every request."""

    def __init__(self, token: str) -> None:
        self._header = f"Bearer {token}"

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = self._header
        return request


class _VerifyingAdapter(HTTPAdapter):
    """Connects over https with one prepared TLS context and nothing else.

    requests would otherwise load its own CA bundle into the context (trusting every
    public CA besides the configured ``ca_file``); here the context holds every choice.
    """

    def __init__(self, context: ssl.SSLContext, tls: DestinationTLS) -> None:
        self._context = context
        self._tls = tls
        super().__init__()

    def init_poolmanager(
        self, connections: int, maxsize: int, block: bool = False, **pool_kwargs: Any
    ) -> None:
        pool_kwargs["ssl_context"] = self._context
        if self._tls.server_name:
            pool_kwargs["server_hostname"] = self._tls.server_name
        if not self._tls.check_hostname:
            pool_kwargs["assert_hostname"] = False
        super().init_poolmanager(connections, maxsize, block, **pool_kwargs)

    def cert_verify(self, conn: Any, url: str, verify: Any, cert: Any) -> None:
        conn.cert_reqs = "CERT_REQUIRED"


def _read_secret(path: Path, where: str) -> str:
    """A password or token from its file (surrounding blanks and the newline dropped).

    Raises:
        DeliveryError: the file cannot be read or is empty.
    """
    try:
        secret = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise DeliveryError(f"{where} cannot be read: {exc.__class__.__name__}") from exc
    if not secret:
        raise DeliveryError(f"{where} is empty")
    return secret


def _auth(destination: DicomWebDestination) -> AuthBase | None:
    """The destination's credentials, read now from their files."""
    auth = destination.auth
    where = f"destinations[{destination.name}].auth"
    if isinstance(auth, BasicAuth):
        password = _read_secret(auth.password_file, f"{where}.password_file")
        return HTTPBasicAuth(auth.username, password)
    if isinstance(auth, BearerAuth):
        return _BearerToken(_read_secret(auth.token_file, f"{where}.token_file"))
    return None


@register("dicomweb")
class DicomWebTransport(Transport[DicomWebDestination]):
    """STOW-RS to a DICOMweb service (a VNA, a cloud PACS, Orthanc's DICOMweb plugin)."""

    def __init__(self, *, node: NodeSettings, settings: SenderSettings) -> None:
        super().__init__(node=node, settings=settings)
        self._contexts: dict[str, ssl.SSLContext] = {}

    def _context(self, destination: DicomWebDestination) -> ssl.SSLContext:
        """The destination's TLS context, made once."""
        context = self._contexts.get(destination.name)
        if context is None:
            tls = destination.tls or DestinationTLS()
            try:
                context = client_context(tls, where=f"destinations[{destination.name}].tls")
            except ConfigurationError as exc:
                raise DeliveryError(str(exc)) from exc
            self._contexts[destination.name] = context
        return context

    def open(self, destination: DicomWebDestination) -> DicomWebSession:
        """An HTTP session to the service, with its credentials and TLS; nothing is sent yet.

        Raises:
            DeliveryError: the credentials or the TLS files cannot be read.
        """
        http = requests.Session()
        http.trust_env = False
        http.auth = _auth(destination)
        http.headers["Accept"] = ANSWER_MEDIA_TYPE
        if destination.https:
            tls = destination.tls or DestinationTLS()
            http.mount("https://", _VerifyingAdapter(self._context(destination), tls))
        timeout = destination.timeout_seconds or self.node.network_timeout
        try:
            client = DICOMwebClient(
                destination.url, session=http, chunk_size=ONE_PIECE_BYTES, timeout=timeout
            )
        except ValueError as exc:
            http.close()
            raise DeliveryError(f"destinations[{destination.name}].url: {exc}") from exc
        client.set_http_retry_params(retry=False)
        return DicomWebSession(client, http, where=destination.name)


class DicomWebSession(TransportSession):
    """One HTTP session to a DICOMweb service; each output is one STOW-RS request."""

    def __init__(self, client: DICOMwebClient, http: requests.Session, *, where: str) -> None:
        self.client = client
        self.http = http
        self.where = where
        self._unreachable: str | None = None
        self._last_status = 0
        http.hooks["response"].append(self._remember_status)

    def _remember_status(self, response: requests.Response, **_: Any) -> requests.Response:
        # dicomweb-client answers with the dataset only; the status says 200 from 202.
        self._last_status = response.status_code
        return response

    def send(self, path: Path) -> Outcome:
        """Store one file; see :mod:`daemon.transports.stow` for what each answer means."""
        if self._unreachable is not None:
            return TransientFailure(f"not tried: {self._unreachable}")
        try:
            dataset = dcmread(path)
        except (OSError, InvalidDicomError) as exc:
            return TransientFailure(f"cannot read {path.name}: {exc.__class__.__name__}")
        uid = str(dataset.SOPInstanceUID)
        self._last_status = 0
        answer: Dataset | None
        try:
            answer = self.client.store_instances([dataset])
        except requests.HTTPError as exc:
            response = exc.response
            if response is None:
                return TransientFailure(f"no answer from {self.where}")
            return stow_outcome(
                response.status_code, _answer_of(response), sop_instance_uid=uid, where=self.where
            )
        except (requests.ConnectionError, requests.Timeout) as exc:
            self._unreachable = f"{self.where} did not answer ({_why(exc)})"
            return TransientFailure(f"cannot reach {self.where}: {_why(exc)}")
        except requests.RequestException as exc:
            return TransientFailure(f"request to {self.where} failed: {_why(exc)}")
        except (ValueError, KeyError):
            # An answer dicomweb-client could not read; the status still says stored or not.
            answer = None
        return stow_outcome(self._last_status, answer, sop_instance_uid=uid, where=self.where)

    def close(self) -> None:
        """Close the session's connections."""
        self.http.close()


def _answer_of(response: requests.Response) -> Dataset | None:
    """The dataset of a refusal's body, when it is DICOM JSON (else None)."""
    media_type = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
    if media_type not in (ANSWER_MEDIA_TYPE, "application/json") or not response.content:
        return None
    try:
        return Dataset.from_json(response.json())
    except (ValueError, TypeError, KeyError):
        return None


def _why(exc: BaseException) -> str:
    """The innermost cause of a requests error, briefly (requests nests urllib3's)."""
    cause: BaseException = exc
    for _ in range(8):  # bounded: a chain may loop back on itself
        inner = cause.__cause__ or cause.__context__
        if inner is None:
            break
        cause = inner
    text = str(cause) or cause.__class__.__name__
    return f"{cause.__class__.__name__}: {text}"[:300]
