"""The object each scored image sends to the PACS: built by the ML core, written to the outbox.

A scored image gets the Secondary Capture with its Grad-CAM overlay (readers look at
each image); an image that was not assessable gets the "not assessed" variant: the
image alone with a burned-in NOT ASSESSED band (a visible object in the study, where
readers look; a missing SC would read as "not yet processed"). The SR is the study's,
issued once the study has settled (:mod:`daemon.study_reports`). Each object is
written durably before its row is recorded; its UIDs derive from the job, its kind
and the versions, so a job retried after a crash rewrites the same objects under the
same names.
"""

from __future__ import annotations

from collections.abc import Callable
from io import BytesIO

import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from chestaid.dicom_outputs import (
    NotAssessedFinding,
    OutputIdentity,
    TriageFinding,
    not_assessed_secondary_capture,
    secondary_capture,
)
from daemon.db import queue
from daemon.db.models import OutputKind
from daemon.settings import WorkerSettings
from daemon.spool import FileStore

# Series numbers of ChestAid's outputs in the source study: high, to sort after the
# acquisition's own series in a viewer.
SC_SERIES_NUMBER = 9901
SR_SERIES_NUMBER = 9902


def scored_outputs(
    outbox: FileStore,
    claim: queue.Claim,
    *,
    source: Dataset,
    grey: np.ndarray,
    cam: np.ndarray,
    finding: TriageFinding,
    settings: WorkerSettings,
) -> list[queue.NewOutput]:
    """Write the SC (overlay and burned-in score) of a scored image.

    Args:
        cam: the Grad-CAM map over the image as received.

    Raises:
        OutputError, ConfigurationError: the ML core cannot build an object.
        SpoolError, OSError: the outbox cannot take it.
    """
    versions = (finding.model_version, finding.calibration_version)
    return [
        _write(
            outbox,
            claim,
            OutputKind.SECONDARY_CAPTURE,
            lambda identity: secondary_capture(
                source,
                grey,
                cam,
                finding,
                identity,
                max_side=settings.output_max_side,
                alpha=settings.overlay_alpha,
            ),
            SC_SERIES_NUMBER,
            versions,
        ),
    ]


def not_assessed_outputs(
    outbox: FileStore,
    claim: queue.Claim,
    *,
    source: Dataset,
    grey: np.ndarray,
    finding: NotAssessedFinding,
    settings: WorkerSettings,
) -> list[queue.NewOutput]:
    """Write the SC (the image, no heat map, NOT ASSESSED band) of an image that was not
    assessable.

    Raises:
        OutputError, ConfigurationError: the ML core cannot build an object.
        SpoolError, OSError: the outbox cannot take it.
    """
    versions = (finding.model_version, finding.calibration_version)
    return [
        _write(
            outbox,
            claim,
            OutputKind.SECONDARY_CAPTURE,
            lambda identity: not_assessed_secondary_capture(
                source, grey, finding, identity, max_side=settings.output_max_side
            ),
            SC_SERIES_NUMBER,
            versions,
        ),
    ]


def encoded(ds: Dataset) -> bytes:
    """A dataset as the bytes of a DICOM file (with its preamble and meta header)."""
    buffer = BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _write(
    outbox: FileStore,
    claim: queue.Claim,
    kind: OutputKind,
    build: Callable[[OutputIdentity], Dataset],
    series_number: int,
    versions: tuple[str, int],
) -> queue.NewOutput:
    model_version, calibration_version = versions
    seed = [
        claim.sop_instance_uid,
        str(claim.job_id),
        kind.value,
        model_version,
        str(calibration_version),
    ]
    identity = OutputIdentity(
        series_instance_uid=str(generate_uid(entropy_srcs=[*seed, "series"])),
        sop_instance_uid=str(generate_uid(entropy_srcs=[*seed, "instance"])),
        series_number=series_number,
    )
    ds = build(identity)
    stored = outbox.write(
        encoded(ds), name=outbox.new_name(stem=f"job-{claim.job_id}-{kind.value}")
    )
    return queue.NewOutput(
        kind=kind,
        sop_class_uid=str(ds.SOPClassUID),
        sop_instance_uid=identity.sop_instance_uid,
        series_instance_uid=identity.series_instance_uid,
        file_name=stored.name,
        size_bytes=stored.size,
    )
