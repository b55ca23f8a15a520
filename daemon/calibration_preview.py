"""What a calibration version would have done to the recent studies, before it is activated.

The studies scored in the last few days are scored again from their stored logits with
the candidate's calibrator and banded on its threshold; each study's band (the highest
of its assessable images, as on the worklist) is compared with the band it was given.
Computed on demand, never stored: the count an admin confirms is recounted when the
activation is posted.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from chestaid.calibration import calibrator_from_dict
from daemon.db.models import CalibrationVersion, Instance, Job, Result, utcnow
from daemon.priority import PriorityBands
from daemon.settings import Band


@dataclass(frozen=True)
class Candidate:
    """A calibration that could be put in use: a local version, or the bundle's own (0)."""

    version: int
    model_version: str
    calibrator: dict[str, Any]
    threshold: float

    @classmethod
    def of_row(cls, row: CalibrationVersion) -> Candidate:
        """A stored local version.

        Raises:
            ValueError: its calibrator is not JSON.
        """
        return cls(row.version, row.model_version, json.loads(row.calibrator), row.threshold)


@dataclass(frozen=True)
class Preview:
    """Studies of the last ``days`` days: how many would change band, and which way.

    ``raised`` moved to a higher band, ``lowered`` to a lower one; ``changed`` is their
    sum. ``flagged_before`` had an image at or above the threshold in force when it was
    scored, ``flagged_after`` would have one under the candidate. Studies whose stored
    band is not among the configured bands are left out (``not_compared``).
    """

    version: int
    days: int
    since: datetime
    studies: int
    changed: int
    raised: int
    lowered: int
    flagged_before: int
    flagged_after: int
    not_compared: int

    def to_dict(self) -> dict[str, Any]:
        """Plain values (the time as ISO 8601)."""
        out = asdict(self)
        out["since"] = self.since.isoformat()
        return out


def preview(
    session: Session,
    row: Candidate,
    *,
    bands: Sequence[Band],
    days: int,
    now: datetime | None = None,
) -> Preview:
    """Re-score the studies of the last ``days`` days with a candidate and count the changes.

    Raises:
        chestaid.errors.CalibrationError: the row's calibrator cannot be read.
        chestaid.errors.ConfigurationError: the row's threshold is not a number.
    """
    since = (now or utcnow()) - timedelta(days=days)
    rows = session.execute(
        select(Instance.study_instance_uid, Result.logit, Result.priority, Result.above_threshold)
        .join(Job, Job.instance_id == Instance.id)
        .join(Result, Result.job_id == Job.id)
        .where(
            Result.model_version == row.model_version,
            Result.assessable,
            Result.scored_at >= since,
        )
    ).all()
    resolved = PriorityBands.resolve(bands, row.threshold)
    names = [name for name, _ in resolved.cutoffs]  # highest first: rank 0 is the top band
    minimums = np.array([minimum for _, minimum in resolved.cutoffs])
    calibrator = calibrator_from_dict(row.calibrator)
    scores = calibrator.predict_proba(np.array([r.logit for r in rows], dtype=np.float64))
    # The candidate's band of each image: the first (highest) whose minimum it reaches,
    # the lowest band when it reaches none (as PriorityBands.assign).
    reached = scores[:, None] >= minimums[None, :]
    after = np.where(reached.any(axis=1), reached.argmax(axis=1), len(names) - 1)
    unknown = len(names)  # a stored band no longer configured
    before = np.array([names.index(r.priority) if r.priority in names else unknown for r in rows])
    flagged_before = np.array([bool(r.above_threshold) for r in rows])
    flagged_after = scores >= row.threshold
    # Per study (the highest band of its images, as on the worklist).
    _, study = np.unique([r.study_instance_uid for r in rows], return_inverse=True)
    n = int(study.max()) + 1 if rows else 0
    best_before = np.full(n, unknown + 1)
    best_after = np.full(n, unknown + 1)
    np.minimum.at(best_before, study, before)
    np.minimum.at(best_after, study, after)
    # A study with any image in a band no longer configured is not compared.
    has_unknown = np.zeros(n, dtype=bool)
    np.logical_or.at(has_unknown, study, before == unknown)
    any_before = np.zeros(n, dtype=bool)
    any_after = np.zeros(n, dtype=bool)
    np.logical_or.at(any_before, study, flagged_before)
    np.logical_or.at(any_after, study, flagged_after)
    compared = ~has_unknown
    raised = int(np.sum(compared & (best_after < best_before)))
    lowered = int(np.sum(compared & (best_after > best_before)))
    return Preview(
        version=row.version,
        days=days,
        since=since,
        studies=n,
        changed=raised + lowered,
        raised=raised,
        lowered=lowered,
        flagged_before=int(any_before.sum()),
        flagged_after=int(any_after.sum()),
        not_compared=int(has_unknown.sum()),
    )
