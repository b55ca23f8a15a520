"""The DICOM transport: outputs sent by C-STORE over one association per destination.

The association requests the output SOP classes (Secondary Capture and
Comprehensive SR) in Explicit and Implicit VR Little Endian, calling with the
sender's ``calling_ae_title`` (or the node's AE title) and the node's timeouts and
maximum PDU size. Every failure is transient: a PACS that is down, refuses the
association, or answers a C-STORE with an error status is tried again after the
backoff, and the delivery is dead-lettered only after the last attempt, where an
admin sees it (a refusal is often fixed on the PACS's side).

A destination with a ``tls`` table is called over TLS 1.2 or later (:mod:`daemon.tls`):
its certificate is verified against ``ca_file`` (or the system's CAs) and, unless
``check_hostname`` is off, must name ``server_name`` (or ``host``); this node shows
its own certificate when one is set. A failed handshake is a transient failure whose
error says why (an expired or misnamed certificate is fixed on either side).

An output whose transfer syntax the destination accepted goes as its file's bytes, read
in PDU-sized pieces, with nothing decoded or encoded again (pynetdicom's
``STORE_SEND_CHUNKED_DATASET``, set for the process when the transport is made). Only
when the destination took the other syntax is the file decoded and sent converted.
"""

from __future__ import annotations

import logging
from pathlib import Path

from pydicom import dcmread
from pydicom.errors import InvalidDicomError
from pydicom.filereader import read_file_meta_info
from pydicom.uid import (
    ComprehensiveSRStorage,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    SecondaryCaptureImageStorage,
)
from pynetdicom import AE, _config, evt
from pynetdicom.association import Association

from chestaid.errors import ConfigurationError
from daemon.connections import no_delay_on_connect
from daemon.errors import DeliveryError
from daemon.settings import Destination, NodeSettings, SenderSettings
from daemon.tls import ClientContext, client_context
from daemon.transports.base import (
    Outcome,
    Stored,
    TransientFailure,
    Transport,
    TransportSession,
    register,
)

logger = logging.getLogger(__name__)

OUTPUT_SOP_CLASSES = (SecondaryCaptureImageStorage, ComprehensiveSRStorage)
# Statuses after which the object is stored at the destination (PS3.4 B.2.3): success
# and the warnings (coercion, elements discarded, dataset does not match SOP class).
STORED_STATUSES = frozenset({0x0000, 0xB000, 0xB006, 0xB007, 0x0107, 0x0116})


@register("dicom")
class DicomTransport(Transport[Destination]):
    """C-STORE to a DICOM node (usually the PACS)."""

    def __init__(self, *, node: NodeSettings, settings: SenderSettings) -> None:
        super().__init__(node=node, settings=settings)
        # A path given to send_c_store is sent as its bytes (see the module's text).
        _config.STORE_SEND_CHUNKED_DATASET = True
        ae = AE(ae_title=settings.calling_ae_title or node.ae_title)
        ae.acse_timeout = node.acse_timeout
        ae.dimse_timeout = node.dimse_timeout
        ae.network_timeout = node.network_timeout
        # Bounds the TCP connect and the TLS handshake (pynetdicom waits for ever without).
        ae.connection_timeout = node.network_timeout
        ae.maximum_pdu_size = node.max_pdu_bytes
        for sop_class in OUTPUT_SOP_CLASSES:
            ae.add_requested_context(sop_class, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
        self.ae = ae
        self._contexts: dict[str, ClientContext] = {}

    def _tls_args(self, destination: Destination) -> tuple[ClientContext, str] | None:
        """The destination's TLS context (made once) and expected name; None: plain DICOM."""
        if destination.tls is None:
            return None
        context = self._contexts.get(destination.name)
        if context is None:
            where = f"destinations[{destination.name}].tls"
            try:
                context = client_context(destination.tls, where=where)
            except ConfigurationError as exc:
                raise DeliveryError(str(exc)) from exc
            self._contexts[destination.name] = context
        context.last_failure = None
        return context, destination.tls.server_name or destination.host

    def open(self, destination: Destination) -> DicomSession:
        """Associate with the destination.

        Raises:
            DeliveryError: the association could not be made, or was rejected or aborted.
        """
        where = f"{destination.ae_title}@{destination.host}:{destination.port}"
        tls_args = self._tls_args(destination)
        try:
            assoc = self.ae.associate(
                destination.host,
                destination.port,
                ae_title=destination.ae_title,
                tls_args=tls_args,
                evt_handlers=[(evt.EVT_CONN_OPEN, no_delay_on_connect)],
            )
        except (OSError, RuntimeError, ValueError) as exc:
            raise DeliveryError(f"cannot associate with {where}: {exc}") from exc
        if tls_args is not None and tls_args[0].last_failure is not None:
            raise DeliveryError(f"TLS handshake with {where} failed: {tls_args[0].last_failure}")
        if not assoc.is_established:
            why = (
                "rejected"
                if assoc.is_rejected
                else "aborted"
                if assoc.is_aborted
                else "not established"
            )
            raise DeliveryError(f"association with {where} {why}")
        return DicomSession(assoc)


class DicomSession(TransportSession):
    """One established association; objects are sent over it one C-STORE at a time."""

    def __init__(self, assoc: Association) -> None:
        self.assoc = assoc
        self._accepted = {
            (str(cx.abstract_syntax), str(cx.transfer_syntax[0])) for cx in assoc.accepted_contexts
        }

    def send(self, path: Path) -> Outcome:
        """C-STORE one file; stored when the status is success or a storing warning."""
        if not self.assoc.is_established:
            return TransientFailure("association ended before this object was sent")
        try:
            meta = read_file_meta_info(path)
            syntax = (str(meta.MediaStorageSOPClassUID), str(meta.TransferSyntaxUID))
            # As stored when the destination took the file's own syntax; else converted.
            as_stored = syntax in self._accepted
            status_ds = self.assoc.send_c_store(path if as_stored else dcmread(path))
        except (OSError, ValueError, RuntimeError, AttributeError, InvalidDicomError) as exc:
            return TransientFailure(f"cannot send {path.name}: {exc}")
        status = int(status_ds.get("Status", -1)) if status_ds else -1
        if status in STORED_STATUSES:
            return Stored(status)
        if status < 0:
            return TransientFailure("no response to C-STORE (timeout or connection lost)")
        return TransientFailure(f"C-STORE refused with status 0x{status:04X}", status)

    def close(self) -> None:
        """Release the association if it is still up."""
        if self.assoc.is_established:
            self.assoc.release()
