"""What a STOW-RS answer means for one output: stored, worth retrying, or refused for good.

Pure functions of the HTTP status and the answer's dataset (PS3.18 10.5.3), kept apart
from the transport so the rules read in one place:

* A failure reason for our instance in the answer's Failed SOP Sequence decides, whatever
  the HTTP status: out of resources (0xA7xx), a processing failure (0x0110) or "not
  authorised" (0x0124) pass with time or an admin's fix and are retried; a dataset the
  service cannot take (0xA9xx, 0xCxxx, 0x0122 SOP class not supported) never will be and
  is refused for good. A duplicate (0x0111) means the service already holds an instance
  with this UID, which is ours: sent before, its success not recorded.
* Otherwise 2xx is stored, with the instance's warning reason as the status when the
  service gave one (202 with a coercion warning, say).
* 400, 409, 413, 415 and 422 refuse the request's content: sending the same bytes
  again cannot help, so the delivery is dead-lettered at once.
* Everything else is transient: 401/403/407 (a credential an admin mends, read afresh
  each round: making them permanent would dead-letter the whole outbox at the first
  expired password), 404/405 (a URL an admin mends), 408/429 and 5xx. They are retried
  with the sender's backoff and dead-lettered after ``max_attempts``, where the outbox
  shows the status.

Errors name HTTP statuses and DICOM reason codes, never the answer's text, which a
service may fill with the object's attributes.
"""

from __future__ import annotations

from pydicom import Dataset

from daemon.transports.base import Outcome, PermanentFailure, Stored, TransientFailure

DUPLICATE = 0x0111
PROCESSING_FAILURE = 0x0110
NOT_AUTHORISED = 0x0124
SOP_CLASS_NOT_SUPPORTED = 0x0122
# HTTP statuses that refuse the request's content itself.
CONTENT_REFUSED = frozenset({400, 409, 413, 415, 422})
CREDENTIALS_REFUSED = frozenset({401, 403, 407})


def _reason(item: Dataset, keyword: str) -> int | None:
    value = item.get(keyword)
    return int(value) if value is not None else None


def _item_for(answer: Dataset | None, sequence: str, sop_instance_uid: str) -> Dataset | None:
    """The answer's item in ``sequence`` that refers to our instance, if any."""
    if answer is None:
        return None
    items: list[Dataset] = list(answer.get(sequence, None) or [])
    for item in items:
        if str(item.get("ReferencedSOPInstanceUID", "")) == sop_instance_uid:
            return item
    return None


def failure_is_permanent(reason: int) -> bool:
    """Whether a STOW-RS failure reason means the service will never take this object."""
    return (
        0xA900 <= reason <= 0xA9FF
        or 0xC000 <= reason <= 0xCFFF
        or reason == SOP_CLASS_NOT_SUPPORTED
    )


def stow_outcome(
    http_status: int, answer: Dataset | None, *, sop_instance_uid: str, where: str
) -> Outcome:
    """The outcome of storing one instance, from the service's answer.

    Args:
        http_status: the answer's HTTP status code.
        answer: the answer's dataset (Referenced and Failed SOP Sequences), None when
            it had none or it could not be read.
        sop_instance_uid: the instance that was sent.
        where: the destination, for the error (its settings key).

    Returns:
        :class:`Stored` with the DICOM status (0 or the warning reason), or a failure
        whose status is the failure reason when the service gave one.
    """
    failed = _item_for(answer, "FailedSOPSequence", sop_instance_uid)
    reason = _reason(failed, "FailureReason") if failed is not None else None
    if reason is not None:
        if reason == DUPLICATE:
            return Stored(DUPLICATE)
        error = f"HTTP {http_status} from {where}: the object was refused, reason 0x{reason:04X}"
        if failure_is_permanent(reason):
            return PermanentFailure(error, reason)
        return TransientFailure(error, reason)
    if 200 <= http_status < 300:
        referenced = _item_for(answer, "ReferencedSOPSequence", sop_instance_uid)
        warning = _reason(referenced, "WarningReason") if referenced is not None else None
        return Stored(warning or 0)
    if http_status in CONTENT_REFUSED:
        return PermanentFailure(
            f"HTTP {http_status} from {where}: the service refused the object's content"
        )
    if http_status in CREDENTIALS_REFUSED:
        return TransientFailure(
            f"HTTP {http_status} from {where}: the service did not accept the credentials "
            "(check the destination's auth and its account there)"
        )
    return TransientFailure(f"HTTP {http_status} from {where}")
