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
    names = [name for name, _ in resolved.cutoffs]  # highest first
    calibrator = calibrator_from_dict(row.calibrator)
    scores = calibrator.predict_proba(np.array([r.logit for r in rows], dtype=np.float64))
    # Per study: (best rank before, best rank after, flagged before, flagged after);
    # rank 0 is the top band, None a stored band no longer configured.
    per_study: dict[str, list[Any]] = {}
    for r, score in zip(rows, scores, strict=True):
        before = names.index(r.priority) if r.priority in names else None
        after = names.index(resolved.assign(float(score)))
        seen = per_study.get(r.study_instance_uid)
        if seen is None:
            per_study[r.study_instance_uid] = [
                before,
                after,
                bool(r.above_threshold),
                bool(score >= row.threshold),
            ]
            continue
        seen[0] = None if seen[0] is None or before is None else min(seen[0], before)
        seen[1] = min(seen[1], after)
        seen[2] = seen[2] or bool(r.above_threshold)
        seen[3] = seen[3] or bool(score >= row.threshold)
    compared = [s for s in per_study.values() if s[0] is not None]
    raised = sum(1 for s in compared if s[1] < s[0])
    lowered = sum(1 for s in compared if s[1] > s[0])
    return Preview(
        version=row.version,
        days=days,
        since=since,
        studies=len(per_study),
        changed=raised + lowered,
        raised=raised,
        lowered=lowered,
        flagged_before=sum(1 for s in per_study.values() if s[2]),
        flagged_after=sum(1 for s in per_study.values() if s[3]),
        not_compared=len(per_study) - len(compared),
    )
