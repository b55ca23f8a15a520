"""Reading a radiologist's final report out of an HL7 v2 ORU^R01, and answering it.

What a RIS sends when a report is signed: an ORU^R01 whose OBR names the order and
whose OBX segments carry the report's text (usually one TX or FT line per OBX). This
module reads what ChestAid needs from it, in any HL7 v2 version, splitting the message
by the delimiters its own MSH declares (the text keeps its escapes until they are
undone here; hl7apy, which builds the answer, would escape them again):

- the **accession number**: OBR-3 (filler order number), else OBR-18 (placer field 1,
  where IHE's scheduled workflow puts it), else ORC-3;
- the **Study Instance UID** when the message carries one: an OBX whose identifier is
  DICOM's ``113014`` (Study) or ChestAid's own ``STUDY-UID``, or IHE's ``ZDS-1``;
- the **result status**, OBR-25: only ``F`` (final) and ``C`` (corrected) reports give
  labels; others (preliminary, in progress) are acknowledged and left unused;
- the **text**: every OBX value of a text type (TX, FT, ST) in order, each repetition a
  line, HL7 escapes undone, and NTE comments.

The answer is an original-mode ACK (MSA-1 ``AA``, ``AE`` or ``AR``) built with hl7apy.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from hl7apy.core import Message

from daemon.errors import DaemonError

TEXT_TYPES = frozenset({"TX", "FT", "ST"})
STUDY_UID_CODES = frozenset({"113014", "STUDY-UID"})
LABELLING_STATUSES = frozenset({"F", "C"})


class ReportMessageError(DaemonError):
    """A message that is not an HL7 v2 ORU^R01 ChestAid can read (answered AR)."""


@dataclass(frozen=True)
class FinalReport:
    """What ChestAid takes from one report message.

    Attributes:
        control_id: MSH-10, which the acknowledgement names.
        sending_application: MSH-3's first component (for the allowlist and the audit).
        sending_facility: MSH-4's first component.
        accession_number: the order's accession number, or "".
        study_instance_uid: the study's UID when the message carries one, or "".
        status: OBR-25 (F final, C corrected, P preliminary, ...), upper-cased.
        text: the report's text, lines joined by newlines.
    """

    control_id: str
    sending_application: str
    sending_facility: str
    accession_number: str
    study_instance_uid: str
    status: str
    text: str

    @property
    def labels(self) -> bool:
        """Whether the report is final (or a correction of one) and so gives a label."""
        return self.status in LABELLING_STATUSES


@dataclass(frozen=True)
class Encoding:
    """The message's own delimiters, as MSH-1 and MSH-2 declare them."""

    field: str = "|"
    component: str = "^"
    repetition: str = "~"
    escape: str = "\\"
    subcomponent: str = "&"


def unescape(text: str, encoding: Encoding | None = None) -> str:
    """HL7 escape sequences back to characters (formatting commands become nothing)."""
    e = encoding or Encoding()
    if e.escape not in text:
        return text
    simple = {
        "F": e.field,
        "S": e.component,
        "T": e.subcomponent,
        "R": e.repetition,
        "E": e.escape,
        ".br": "\n",
    }
    mark = re.escape(e.escape)
    return re.sub(f"{mark}([^{mark}]*){mark}", lambda m: simple.get(m.group(1), ""), text)


@dataclass(frozen=True)
class RawMessage:
    """A message as segments of fields (split by its own delimiters; escapes kept)."""

    encoding: Encoding
    segments: list[list[str]]

    def first(self, name: str) -> list[str]:
        """The first segment called ``name`` (its fields, index 0 the name), or []."""
        return next((s for s in self.segments if s[0] == name), [])

    def value(self, fields: list[str], number: int, component: int = 1) -> str:
        """Field ``number``'s first repetition's ``component``, unescaped ("" when absent)."""
        if number >= len(fields):
            return ""
        repetition = fields[number].split(self.encoding.repetition)[0]
        parts = repetition.split(self.encoding.component)
        if component > len(parts):
            return ""
        return unescape(parts[component - 1], self.encoding).strip()


def split(text: str) -> RawMessage:
    """Split a message by the delimiters its MSH declares.

    Raises:
        ReportMessageError: it does not start with an MSH segment and its delimiters.
    """
    lines = [line for line in re.split(r"\r\n|\r|\n", text.strip("\r\n\x00 ")) if line]
    if not lines or not lines[0].startswith("MSH") or len(lines[0]) < 8:
        raise ReportMessageError("not an HL7 v2 message: it does not start with MSH")
    header = lines[0]
    separator, characters = header[3], header[4:8]
    if len(set(separator + characters)) != 5 or any(c.isalnum() for c in separator + characters):
        raise ReportMessageError("not an HL7 v2 message: its MSH declares no delimiters")
    encoding = Encoding(separator, characters[0], characters[1], characters[2], characters[3])
    segments = [line.split(separator) for line in lines]
    # MSH-1 is the field separator itself: counted as a field, as the standard numbers them.
    segments[0].insert(1, separator)
    return RawMessage(encoding, segments)


def read_final_report(message: RawMessage) -> FinalReport:
    """Read a final report from an ORU^R01.

    Raises:
        ReportMessageError: another message type, or an ORU without an OBR.
    """
    msh = message.first("MSH")
    kind = f"{message.value(msh, 9, 1)}^{message.value(msh, 9, 2)}"
    if kind != "ORU^R01":
        named = kind.strip("^") or "a message without a type"
        raise ReportMessageError(f"ChestAid takes final reports as ORU^R01, not {named}")
    obr = message.first("OBR")
    if not obr:
        raise ReportMessageError("the ORU^R01 has no OBR segment (no order to report on)")
    orc = message.first("ORC")
    accession = message.value(obr, 3) or message.value(obr, 18) or message.value(orc, 3)
    study_uid = ""
    lines: list[str] = []
    for fields in message.segments:
        name = fields[0]
        if name == "OBX":
            value_type = message.value(fields, 2).upper()
            if message.value(fields, 3) in STUDY_UID_CODES:
                study_uid = study_uid or message.value(fields, 5)
            elif value_type in TEXT_TYPES and len(fields) > 5:
                # The whole OBX-5, each repetition a line (TX may hold "^" as text).
                for line in fields[5].split(message.encoding.repetition):
                    lines.append(unescape(line, message.encoding))
        elif name == "NTE" and len(fields) > 3:
            lines.append(unescape(fields[3], message.encoding))
        elif name == "ZDS":
            study_uid = study_uid or message.value(fields, 1)
    return FinalReport(
        control_id=message.value(msh, 10),
        sending_application=message.value(msh, 3),
        sending_facility=message.value(msh, 4),
        accession_number=accession,
        study_instance_uid=study_uid,
        status=message.value(obr, 25).upper(),
        text="\n".join(line.strip() for line in lines if line.strip()),
    )


def _plain(text: str) -> str:
    """Text without any HL7 delimiter or line break (for values echoed in an ACK)."""
    return re.sub(r"[|^~\\&\r\n\x0b\x1c]", " ", text).strip()


def acknowledgement(
    message: RawMessage | None,
    code: str,
    text: str = "",
    *,
    now: datetime | None = None,
) -> str:
    """An original-mode ACK: MSA-1 ``code`` answering ``message`` (or an unreadable one).

    Args:
        message: the message answered; None when it could not be read.
        code: AA accepted, AE error (send again), AR rejected (do not send again).
        text: MSA-3, said to the sender (no patient data).
    """
    ack = Message("ACK", version="2.5.1")
    ack.msh.msh_3 = "CHESTAID"
    answered = ""
    if message is not None:
        msh = message.first("MSH")
        for ours, theirs in ((5, 3), (6, 4)):
            value = _plain(message.value(msh, theirs))
            if value:
                setattr(ack.msh, f"msh_{ours}", value[:20])
        answered = _plain(message.value(msh, 10))[:199]
    ack.msh.msh_7 = (now or datetime.now(UTC)).strftime("%Y%m%d%H%M%S+0000")
    ack.msh.msh_9 = "ACK^R01^ACK"
    ack.msh.msh_10 = ("A" + answered)[:20] if answered else "CHESTAID-ACK"
    ack.msh.msh_11 = "P"
    ack.msa.msa_1 = code
    if answered:
        ack.msa.msa_2 = answered
    if text:
        ack.msa.msa_3 = _plain(text)[:80]
    return str(ack.to_er7())
