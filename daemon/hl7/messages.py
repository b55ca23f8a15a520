"""The HL7 v2.5.1 messages ChestAid sends to a RIS, built and read with hl7apy.

**Why ORU^R01.** A triage result is an observation about an ordered study, and an
unsolicited observation result (ORU^R01) is the message every RIS and interface engine
takes from ancillary systems (the same path a dictation system's reports come in).
Changing the order itself (ORM^O01 or OMI^O23) belongs to the placer of the order, the
RIS or the HIS; a third system rewriting orders would fight the order's owner. So the
result travels as an ORU, and the priority ChestAid asks for rides in it (TQ1-9),
where an engine maps it onto the worklist.

**A priority is never lowered.** TQ1-9 is sent only for the bands a site names as
raising the priority (by default the top band), and then as ``S`` (STAT), the highest
priority of HL7 table 0485; for every other band the message carries no priority at
all, so whatever the order had stays. ChestAid can raise a study's priority, never
lower it, without having to know what the order said.

The message (segments in order; the values are what the SR sent to the PACS states,
read back from it by :func:`chestaid.dicom_outputs.read_back.read_triage_report`):

- MSH: ChestAid as sending application, ``ORU^R01^ORU_R01``, a control ID derived
  from the SR and the destination (the same on every retry, so a RIS can drop a
  duplicate), processing ID, 2.5.1, UTF-8.
- PID: PID-3 the Patient ID with its issuer as assigning authority, PID-5 the name.
- ORC: ``RE`` (observations to follow), ORC-3 the accession number.
- OBR: OBR-3 and OBR-18 the accession number (where RIS vendors look for it), OBR-4
  ChestAid's triage service, OBR-7 when the SR was made, OBR-25 ``P``: a preliminary
  result, never final, since no reader has verified it.
- NTE: "Triage support, not a diagnosis; ..." (and, for an image not assessed, why;
  for a report replacing an earlier one of the study, that it does).
- TQ1 (only when the priority is raised): TQ1-9 ``S^STAT^HL70485``.
- OBX (each status ``P``): the priority band (ST), the calibrated probability of
  pneumonia (NM, unit ``{ratio}``), the triage flag (CWE, Y/N of table 0136), the Study
  Instance UID (ST), the algorithm's name and version (ST, DCM 111001 and 111003) and
  the calibration version (NM). An image not assessed has the band ``NOT ASSESSED``
  and neither score nor flag. An N-class model's report adds, after the probability
  of pneumonia, the calibrated probability of each class (NM, unit ``{ratio}``,
  ``PROB-<NAME>^Probability of class <name>^99CHESTAID``, the SR's codes).
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.core import Group, Message
from hl7apy.exceptions import HL7apyException
from hl7apy.parser import parse_message

from chestaid.dicom_outputs.common import DISCLAIMER, class_probability_code
from chestaid.dicom_outputs.read_back import ReportedTriage
from daemon.errors import DeliveryError

VERSION = "2.5.1"
SCHEME = "99CHESTAID"
SERVICE = ("CHESTAID-TRIAGE", "ChestAid pneumonia triage", SCHEME)
BAND = ("PNEUMONIA-BAND", "Pneumonia triage priority band", SCHEME)
PROBABILITY = ("PNEUMONIA-PROB", "Probability of pneumonia", SCHEME)
SUSPECTED = ("PNEUMONIA-SUSP", "Pneumonia suspected by triage algorithm", SCHEME)
STUDY_UID = ("STUDY-UID", "Study Instance UID", SCHEME)
ALGORITHM_NAME = ("111001", "Algorithm Name", "DCM")
ALGORITHM_VERSION = ("111003", "Algorithm Version", "DCM")
CALIBRATION_VERSION = ("CALIBRATION-VERSION", "Calibration version", SCHEME)
NOT_ASSESSED_BAND = "NOT ASSESSED"
NOTE = f"{DISCLAIMER}; the image must be read by a qualified reader."
REPLACES_NOTE = (
    "This result replaces ChestAid's earlier result for this study: a later image raised "
    "the study's priority."
)


class MessageError(DeliveryError):
    """A message cannot be built from this report (a value HL7 v2.5.1 cannot carry)."""


@dataclass(frozen=True)
class Addressing:
    """Who sends and who receives, as MSH-3 to MSH-6 and MSH-11 name them."""

    sending_application: str = "CHESTAID"
    sending_facility: str = ""
    receiving_application: str = ""
    receiving_facility: str = ""
    processing_id: str = "P"  # P production, T training, D debugging


@dataclass(frozen=True)
class Acknowledgement:
    """A receiver's answer: MSA-1, the control ID it answers, and what it said."""

    code: str  # AA/CA accepted, AE/CE error, AR/CR rejected
    control_id: str
    text: str

    @property
    def accepted(self) -> bool:
        return self.code in ("AA", "CA")

    @property
    def rejected(self) -> bool:
        return self.code in ("AR", "CR")


def control_id(report: ReportedTriage, destination: str) -> str:
    """MSH-10: 20 characters, the same for the same report to the same destination."""
    digest = hashlib.sha256(f"{report.report_sop_instance_uid}|{destination}".encode())
    return digest.hexdigest()[:20].upper()


def _code(target: object, code: tuple[str, str, str]) -> None:
    for index, value in enumerate(code, start=1):
        setattr(target, f"{target.name.lower()}_{index}", value)  # type: ignore[attr-defined]


_ESCAPES = str.maketrans({"\\": "\\E\\", "|": "\\F\\", "^": "\\S\\", "&": "\\T\\", "~": "\\R\\"})


def _class_code(name: str) -> tuple[str, str, str]:
    """OBX-3 of a class's probability: the SR's code, its text escaped (a bundle's class
    name is the bundle maker's text)."""
    code = class_probability_code(name)
    return (_escaped(code.value), _escaped(code.meaning), SCHEME)


def _escaped(text: str) -> str:
    """Text with HL7's delimiters as escape sequences (a whole field set as one string)."""
    return text.translate(_ESCAPES)


def _set(segment: Any, field: str, *components: str) -> None:
    """Set a field from its components, each escaped (values from DICOM headers are
    anyone's text: a delimiter in them must never start a field, component or segment)."""
    setattr(segment, field, "^".join(_escaped(c) for c in components).rstrip("^"))


def _observation(
    group: Group, index: int, value_type: str, code: tuple[str, str, str], value: str
) -> Group:
    observation = group.add_group("ORU_R01_OBSERVATION")
    obx = observation.obx
    obx.obx_1 = str(index)
    obx.obx_2 = value_type
    _code(obx.obx_3, code)
    # OBX-5's type is OBX-2's: set as one string (CWE's components are ours, fixed).
    obx.obx_5 = value if value_type == "CWE" else _escaped(value)
    obx.obx_11 = "P"
    return observation


def triage_result(
    report: ReportedTriage,
    *,
    addressing: Addressing,
    destination: str,
    raising_bands: Collection[str],
    now: datetime | None = None,
) -> str:
    """The ORU^R01 of one report, in ER7 (segments separated by CR), validated.

    Args:
        report: what the SR states.
        addressing: MSH's applications, facilities and processing ID.
        destination: the destination's name (for the control ID).
        raising_bands: the bands that ask the RIS for STAT (TQ1-9); others ask nothing.
        now: MSH-7 (the current time by default).

    Raises:
        MessageError: a value cannot be carried (hl7apy's validation says which).
    """
    now = now or datetime.now(UTC)
    try:
        message = Message("ORU_R01", version=VERSION, validation_level=VALIDATION_LEVEL.STRICT)
        msh = message.msh
        _set(msh, "msh_3", addressing.sending_application)
        if addressing.sending_facility:
            _set(msh, "msh_4", addressing.sending_facility)
        if addressing.receiving_application:
            _set(msh, "msh_5", addressing.receiving_application)
        if addressing.receiving_facility:
            _set(msh, "msh_6", addressing.receiving_facility)
        msh.msh_7 = now.strftime("%Y%m%d%H%M%S+0000")
        msh.msh_9 = "ORU^R01^ORU_R01"
        msh.msh_10 = control_id(report, destination)
        msh.msh_11 = addressing.processing_id
        msh.msh_18 = "UNICODE UTF-8"

        result = message.add_group("ORU_R01_PATIENT_RESULT")
        pid = result.add_group("ORU_R01_PATIENT").pid
        pid.pid_1 = "1"
        # CX: ID^^^assigning authority; "" is HL7's explicit null (PID-3 is required).
        _set(pid, "pid_3", report.patient_id, "", "", report.issuer_of_patient_id)
        if not report.patient_id:
            pid.pid_3 = '""'
        # DICOM PN is family^given^middle^prefix^suffix; XPN is family^given^middle^suffix^prefix.
        family, given, middle, prefix, suffix = (
            report.patient_name.split("=")[0].split("^") + [""] * 5
        )[:5]
        _set(pid, "pid_5", family, given, middle, suffix, prefix)
        if not any((family, given, middle, prefix, suffix)):
            pid.pid_5 = '""'

        order = result.add_group("ORU_R01_ORDER_OBSERVATION")
        order.orc.orc_1 = "RE"
        obr = order.obr
        obr.obr_1 = "1"
        if report.accession_number:
            _set(order.orc, "orc_3", report.accession_number)
            _set(obr, "obr_3", report.accession_number)
            _set(obr, "obr_18", report.accession_number)
        _code(obr.obr_4, SERVICE)
        if report.content_datetime:
            obr.obr_7 = report.content_datetime
        obr.obr_22 = now.strftime("%Y%m%d%H%M%S+0000")
        obr.obr_25 = "P"
        notes = [NOTE]
        if report.not_assessable_reason is not None:
            notes.insert(0, f"Image not assessed by ChestAid: {report.not_assessable_reason}.")
        if report.replaces is not None:
            notes.insert(0, REPLACES_NOTE)
        for index, text in enumerate(notes, start=1):
            nte = order.add_segment("NTE")
            nte.nte_1 = str(index)
            _set(nte, "nte_3", text)
        if report.band is not None and report.band in raising_bands:
            tq1 = order.add_group("ORU_R01_TIMING_QTY").tq1
            tq1.tq1_1 = "1"
            _code(tq1.tq1_9, ("S", "STAT", "HL70485"))

        observations: list[tuple[str, tuple[str, str, str], str]] = [
            ("ST", BAND, report.band or NOT_ASSESSED_BAND)
        ]
        ratios = {PROBABILITY}
        if report.score is not None:
            observations.append(("NM", PROBABILITY, f"{report.score:.4f}"))
            for name, p in report.class_probabilities:
                code = _class_code(name)
                ratios.add(code)
                observations.append(("NM", code, f"{p:.4f}"))
        if report.suspected is not None:
            flag = "Y^Yes^HL70136" if report.suspected else "N^No^HL70136"
            observations.append(("CWE", SUSPECTED, flag))
        observations += [
            ("ST", STUDY_UID, report.study_instance_uid),
            ("ST", ALGORITHM_NAME, report.algorithm_name),
            ("ST", ALGORITHM_VERSION, report.algorithm_version),
            ("NM", CALIBRATION_VERSION, str(report.calibration_version)),
        ]
        for index, (value_type, code, value) in enumerate(observations, start=1):
            observation = _observation(order, index, value_type, code, value)
            if code in ratios:
                _code(observation.obx.obx_6, ("{ratio}", "ratio", "UCUM"))
        message.validate()
        return str(message.to_er7())
    except (HL7apyException, ValueError, TypeError) as exc:
        # hl7apy's text quotes the value, which may be a patient's ID or name: not repeated.
        raise MessageError(
            "an HL7 ORU^R01 cannot be built from this report: a value from its header "
            f"(accession number, patient ID or name) breaks HL7 v2.5.1's rules "
            f"({type(exc).__name__})"
        ) from exc


def read_acknowledgement(answer: str) -> Acknowledgement:
    """Read a receiver's answer (an ACK, original or enhanced mode).

    Raises:
        MessageError: the answer is not an HL7 message with an MSA segment.
    """
    try:
        message = parse_message(answer.strip("\r\n") + "\r", find_groups=False)
        msa = next((s for s in message.children if s.name == "MSA"), None)
        if msa is None:
            raise MessageError("the answer has no MSA segment")
        code = str(msa.msa_1.value).strip().upper()
        answered = str(msa.msa_2.value).strip()
        text = str(msa.msa_3.value).strip() if msa.msa_3 else ""
        errors = [s for s in message.children if s.name == "ERR"]
        if errors and not text:
            text = str(errors[0].to_er7())[:200]
    except HL7apyException as exc:
        raise MessageError(f"the answer is not an HL7 v2 message: {exc}") from exc
    if code not in ("AA", "AE", "AR", "CA", "CE", "CR"):
        raise MessageError(f"the answer's MSA-1 is {code!r}, not an acknowledgement code")
    return Acknowledgement(code=code, control_id=answered, text=text)
