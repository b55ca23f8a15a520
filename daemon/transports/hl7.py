"""The HL7 transport: each study report to the RIS as an ORU^R01 over MLLP, acknowledgements read.

A destination of kind ``hl7`` is sent every study's SR (one a study, and a replacing
one when a later image raised the study's priority; never the Secondary Captures);
the transport reads the SR back (:mod:`chestaid.dicom_outputs.read_back`),
makes the message (:mod:`daemon.hl7.messages`) and sends it over one MLLP connection
per round, optionally in TLS (the destination's ``tls`` table, as for DICOM). The
receiver's application acknowledgement decides the outcome:

- ``AA`` (or ``CA``): delivered.
- ``AE`` (or ``CE``), an error in processing: retried after the backoff, like a PACS
  that refused a C-STORE, and dead-lettered after the last attempt.
- ``AR`` (or ``CR``), rejected (an unsupported message type, version or processing
  ID): sending the same message again cannot help, so it is dead-lettered at once,
  where an admin sees the receiver's reason.
- no answer, a lost connection, an answer to another message: retried (the same
  control ID, so a receiver that did get the first one can tell a duplicate).

A report the message cannot be made of is dead-lettered at once (it will not change).
"""

from __future__ import annotations

import logging
from pathlib import Path

from pydicom import dcmread
from pydicom.errors import InvalidDicomError

from chestaid.dicom_outputs.read_back import read_triage_report
from chestaid.errors import ConfigurationError, OutputError
from daemon.errors import DeliveryError
from daemon.hl7.messages import (
    Addressing,
    MessageError,
    control_id,
    read_acknowledgement,
    triage_result,
)
from daemon.hl7.mllp import MllpConnection, MllpError
from daemon.settings import Hl7Destination, NodeSettings, SenderSettings
from daemon.tls import ClientContext, client_context
from daemon.transports.base import (
    Outcome,
    PermanentFailure,
    Stored,
    TransientFailure,
    Transport,
    TransportSession,
    register,
)

logger = logging.getLogger(__name__)


@register("hl7")
class Hl7Transport(Transport[Hl7Destination]):
    """ORU^R01 over MLLP to a RIS or interface engine."""

    def __init__(self, *, node: NodeSettings, settings: SenderSettings) -> None:
        super().__init__(node=node, settings=settings)
        self._contexts: dict[str, ClientContext] = {}

    def _context(self, destination: Hl7Destination) -> ClientContext | None:
        if destination.tls is None:
            return None
        context = self._contexts.get(destination.name)
        if context is None:
            try:
                context = client_context(
                    destination.tls, where=f"destinations[{destination.name}].tls"
                )
            except ConfigurationError as exc:
                raise DeliveryError(str(exc)) from exc
            self._contexts[destination.name] = context
        return context

    def open(self, destination: Hl7Destination) -> Hl7Session:
        """Connect to the destination's MLLP listener.

        Raises:
            DeliveryError: the connection or the TLS handshake failed.
        """
        context = self._context(destination)
        server_name = None if destination.tls is None else destination.tls.server_name
        try:
            connection = MllpConnection(
                destination.host,
                destination.port,
                timeout=self.node.network_timeout,
                tls=context,
                server_name=server_name,
            )
        except MllpError as exc:
            raise DeliveryError(str(exc)) from exc
        return Hl7Session(destination, connection)


class Hl7Session(TransportSession):
    """One MLLP connection; each SR becomes one message and waits for its acknowledgement."""

    def __init__(self, destination: Hl7Destination, connection: MllpConnection) -> None:
        self.destination = destination
        self.connection = connection
        self.addressing = Addressing(
            sending_application=destination.sending_application,
            sending_facility=destination.sending_facility,
            receiving_application=destination.receiving_application,
            receiving_facility=destination.receiving_facility,
            processing_id=destination.processing_id,
        )

    def send(self, path: Path) -> Outcome:
        """Send the ORU^R01 of one SR and read the acknowledgement."""
        try:
            report = read_triage_report(dcmread(path))
        except (OSError, InvalidDicomError) as exc:
            return TransientFailure(f"cannot read {path.name}: {exc}")
        except (OutputError, AttributeError, KeyError, IndexError, ValueError) as exc:
            return PermanentFailure(f"{path.name} is not a ChestAid triage report: {exc}")
        try:
            message = triage_result(
                report,
                addressing=self.addressing,
                destination=self.destination.name,
                raising_bands=self.destination.raising_bands,
            )
        except MessageError as exc:
            return PermanentFailure(str(exc))
        if not self.connection.open:
            return TransientFailure("the MLLP connection ended before this message was sent")
        try:
            answer = read_acknowledgement(self.connection.exchange(message))
        except MllpError as exc:
            return TransientFailure(str(exc))
        except MessageError as exc:
            self.connection.close()  # what follows on this connection cannot be trusted
            return TransientFailure(f"the receiver's answer cannot be read: {exc}")
        sent_id = control_id(report, self.destination.name)
        if answer.control_id != sent_id:
            self.connection.close()
            return TransientFailure(
                f"the receiver acknowledged message {answer.control_id!r}, not {sent_id!r}"
            )
        said = f": {answer.text}" if answer.text else ""
        if answer.accepted:
            return Stored(0)
        if answer.rejected:
            return PermanentFailure(f"the receiver rejected the message ({answer.code}){said}")
        return TransientFailure(f"the receiver could not process the message ({answer.code}){said}")

    def close(self) -> None:
        """Close the connection."""
        self.connection.close()
