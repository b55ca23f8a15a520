"""Shadow mode's report: what ChestAid decided while it ran silently, against the labels.

A site may run ChestAid in shadow mode (``[site] mode = "shadow"``, see
:class:`daemon.settings.SiteSettings`) for a trial period: every image is scored and
its result kept, marked as made in shadow, but nothing is sent. Labels keep arriving
(a reader's click, or a final report read from the RIS), and this report compares the
two: every labelled study whose prediction was made in shadow, the confusion matrix at
the threshold in force for each prediction, sensitivity, specificity, PPV and NPV with
Wilson 95% intervals (the same figures as the feedback report, from
:func:`daemon.feedback.summarise`), and how many labels came from each source. So a
site sees its own sensitivity and specificity before it goes live.

The report always covers the whole shadow period, whatever period the feedback report
shows: shadow results are kept after the site goes live, and still counted here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import distinct, func, select
from sqlalchemy.orm import Session

from daemon.db.models import Instance, Job, Result
from daemon.feedback import GroupReport, LabelledCase, labelled_cases, summarise


@dataclass(frozen=True)
class ShadowReport:
    """The shadow period's results and how they compare with the labels that came.

    ``figures`` are those of the labelled studies whose prediction was made in shadow
    (``figures.feedback`` of them, of which ``figures.labelled`` with a definite label).
    """

    mode: str  # the site's mode now: "live" or "shadow"
    results: int  # images scored in shadow
    studies: int  # studies with an image scored in shadow
    first_scored_at: datetime | None
    last_scored_at: datetime | None
    figures: GroupReport

    @property
    def unlabelled(self) -> int:
        """Studies scored in shadow that have no label yet."""
        return max(0, self.studies - self.figures.feedback)

    def to_dict(self) -> dict[str, Any]:
        """As plain values; undefined rates are None (see :meth:`GroupReport.to_dict`)."""
        figures = self.figures.to_dict()
        del figures["model_version"], figures["calibration_version"]

        def when(value: datetime | None) -> str | None:
            return None if value is None else value.isoformat(timespec="seconds")

        return {
            "mode": self.mode,
            "results": self.results,
            "studies": self.studies,
            "unlabelled": self.unlabelled,
            "first_scored_at": when(self.first_scored_at),
            "last_scored_at": when(self.last_scored_at),
            **figures,
        }


def shadow_cases(cases: Sequence[LabelledCase]) -> list[LabelledCase]:
    """The labelled cases whose prediction was made in shadow mode."""
    return [case for case in cases if case.shadow]


def shadow_report(session: Session, *, mode: str) -> ShadowReport:
    """The whole shadow period: its results, and its labelled studies' figures.

    Args:
        mode: the site's mode now (``settings.site.mode``), said with the figures.
    """
    results, studies, first, last = session.execute(
        select(
            func.count(Result.id),
            func.count(distinct(Instance.study_instance_uid)),
            func.min(Result.scored_at),
            func.max(Result.scored_at),
        )
        .join(Job, Job.id == Result.job_id)
        .join(Instance, Instance.id == Job.instance_id)
        .where(Result.shadow)
    ).one()
    return ShadowReport(
        mode=mode,
        results=int(results),
        studies=int(studies),
        first_scored_at=first,
        last_scored_at=last,
        figures=summarise(shadow_cases(labelled_cases(session)), model_version="shadow"),
    )
