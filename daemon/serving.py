"""The model in service: one place that answers what scores the next study, and how.

The served bundle (the configured one, or the bundled default) is fixed for the life
of the process; its calibration is not: an admin can activate a local calibration
(:mod:`daemon.recalibration`) at any time, and every role must then agree on the
threshold, the target sensitivity and the priority bands at once. So no role keeps
its own copy: the worker asks :meth:`Serving.model` for every job, the worklist,
monitoring, the web pages and the CLI ask :meth:`Serving.current` when they need the
figures. The network's weights are loaded once, on first use (or by
:meth:`Serving.preload` when the worker role starts); the manifest alone answers
:meth:`Serving.current`, so the web and scheduler roles never load the model to draw
a threshold.
"""

from __future__ import annotations

import json
import logging
import math
import threading
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch

from chestaid.bundle import Manifest, builtin_bundle_path, load_bundle, read_manifest
from chestaid.calibration import calibrator_from_dict
from chestaid.errors import BundleError
from chestaid.inference import Scorer
from daemon import recalibration
from daemon.calibration_preview import Candidate
from daemon.db.session import Session, SessionFactory, reading
from daemon.priority import PriorityBands
from daemon.settings import Band, ModelSettings

logger = logging.getLogger(__name__)

__all__ = [
    "ActiveModel",
    "InService",
    "PriorityBands",
    "Serving",
    "bundle_path",
    "load_active_model",
]

DEFAULT_TARGET_SENSITIVITY = 0.9


@dataclass(frozen=True)
class ActiveModel:
    """The model in service: a scorer with its calibration, and the bands on its threshold."""

    scorer: Scorer
    calibration_version: int
    bands: PriorityBands


@dataclass(frozen=True)
class InService:
    """The figures of the model in service, without its weights.

    Attributes:
        model_version: the served bundle's version.
        bundle_calibration_version: the bundle's own calibration version.
        calibration_version: the version in use: a local one when active, else the bundle's.
        threshold: the governed threshold in use (nan when the bundle has none).
        target_sensitivity: the sensitivity that threshold was chosen for.
        local: whether a local calibration is in use.
    """

    model_version: str
    bundle_calibration_version: int
    calibration_version: int
    threshold: float
    target_sensitivity: float
    local: bool
    band_settings: tuple[Band, ...]

    @property
    def bands(self) -> PriorityBands:
        """The priority bands on the threshold in use.

        Raises:
            ConfigurationError: the bundle has no governed threshold.
        """
        return PriorityBands.resolve(self.band_settings, self.threshold)


def bundle_path(model: ModelSettings) -> Path:
    """The configured bundle, or the bundled model it names (the pneumonia model by default)."""
    return model.bundle if model.bundle is not None else builtin_bundle_path(model.builtin)


def _bundle_facts(manifest: Manifest) -> tuple[int, float, float]:
    """The bundle's calibration version, governed threshold and its target sensitivity."""
    governed = manifest.threshold or {}
    return (
        int((manifest.calibration or {}).get("calibration_version", 0)),
        float(governed["threshold"]) if "threshold" in governed else math.nan,
        float(governed.get("target_sensitivity", DEFAULT_TARGET_SENSITIVITY)),
    )


def load_active_model(model: ModelSettings, bands: Sequence[Band]) -> ActiveModel:
    """Load the configured bundle (the bundled model by default) with its own calibration.

    Raises:
        BundleError: the bundle does not load or verify.
        ConfigurationError: the bundle has no governed threshold.
    """
    if model.threads:
        torch.set_num_threads(model.threads)
    bundle = load_bundle(bundle_path(model))
    scorer = Scorer.from_bundle(
        bundle,
        device=model.device,
        runtime=model.runtime,
        precision=model.precision,
        cache_dir=model.runtime_cache,
    )
    version, _, _ = _bundle_facts(bundle.manifest)
    active = ActiveModel(
        scorer=scorer,
        calibration_version=version,
        bands=PriorityBands.resolve(bands, scorer.threshold),
    )
    logger.info(
        "model loaded",
        extra={
            "model_version": scorer.model_version,
            "runtime": scorer.runtime_name,
            "calibration_version": version,
            "threshold": scorer.threshold,
            "bands": dict(active.bands.cutoffs),
        },
    )
    return active


class Serving:
    """The model in service for this process, with the active calibration looked up on demand.

    Args:
        model: where the bundle is and how to run it.
        bands: the configured priority bands.
        sessions: the process's session factory (the active calibration is a row).
        base: a model already loaded with the bundle's own calibration (tests, or a
            process that loaded it elsewhere); otherwise it is loaded on first use.
    """

    def __init__(
        self,
        model: ModelSettings,
        bands: Sequence[Band],
        sessions: SessionFactory,
        *,
        base: ActiveModel | None = None,
    ) -> None:
        self.settings = model
        self.band_settings = tuple(bands)
        self.sessions = sessions
        self._base = base
        self._manifest: Manifest | None = None
        self._local: tuple[int, ActiveModel] | None = None
        self._lock = threading.Lock()

    # -- the figures ---------------------------------------------------------------------

    def manifest(self) -> Manifest:
        """The served bundle's manifest, read once.

        Raises:
            BundleError: the manifest cannot be read.
        """
        if self._manifest is None:
            self._manifest = read_manifest(bundle_path(self.settings))
        return self._manifest

    def bundle_candidate(self) -> Candidate | None:
        """The bundle's own calibration, as :mod:`daemon.calibration_preview` re-scores with
        it (None when the manifest cannot be read or has no calibrator or threshold)."""
        try:
            manifest = self.manifest()
            calibrator = dict((manifest.calibration or {})["calibrator"])
            threshold = float((manifest.threshold or {})["threshold"])
        except (BundleError, KeyError, TypeError, ValueError):
            return None
        return Candidate(0, manifest.version, calibrator, threshold)

    def current(self, session: Session | None = None) -> InService:
        """The model version, calibration, threshold, target and bands in use right now.

        Args:
            session: the caller's unit of work, if it has one (a request's); otherwise
                a reading unit of its own.

        Raises:
            BundleError: the manifest cannot be read.
        """
        if self._base is not None:
            scorer = self._base.scorer
            model_version, version = scorer.model_version, self._base.calibration_version
            threshold, target = scorer.threshold, self._bundle_target()
        else:
            manifest = self.manifest()
            model_version = manifest.version
            version, threshold, target = _bundle_facts(manifest)
        with nullcontext(session) if session is not None else reading(self.sessions) as unit:
            row = recalibration.active_version(unit, model_version=model_version)
            local = None if row is None else (row.version, row.threshold, row.target_sensitivity)
        if local is None:
            return InService(
                model_version, version, version, threshold, target, False, self.band_settings
            )
        return InService(model_version, version, *local, True, self.band_settings)

    def _bundle_target(self) -> float:
        """The bundle's target sensitivity for a model given at construction."""
        assert self._base is not None
        try:
            manifest = self.manifest()
        except BundleError:
            return DEFAULT_TARGET_SENSITIVITY
        if manifest.version != self._base.scorer.model_version:
            return DEFAULT_TARGET_SENSITIVITY
        return _bundle_facts(manifest)[2]

    # -- the model -----------------------------------------------------------------------

    def preload(self) -> ActiveModel:
        """Load the network now (the worker role does, so a bad bundle stops the start).

        Raises:
            BundleError, ConfigurationError: the bundle cannot be served.
        """
        with self._lock:
            return self._loaded()

    def _loaded(self) -> ActiveModel:
        if self._base is None:
            self._base = load_active_model(self.settings, self.band_settings)
        return self._base

    def model(self) -> ActiveModel:
        """The model to score the next study with: the active local calibration, if any.

        The network is loaded once; an activation (or deactivation) takes effect for the
        next call, without a restart.

        Raises:
            BundleError, ConfigurationError: the bundle cannot be served.
        """
        with self._lock:
            base = self._loaded()
            with reading(self.sessions) as session:
                row = recalibration.active_version(session, model_version=base.scorer.model_version)
                wanted = None if row is None else (row.version, row.calibrator, row.threshold)
            if wanted is None:
                if self._local is not None:
                    logger.info(
                        "bundle calibration in use",
                        extra={"calibration_version": base.calibration_version},
                    )
                self._local = None
                return base
            version, calibrator, threshold = wanted
            if self._local is None or self._local[0] != version:
                scorer = base.scorer.with_calibration(
                    calibrator_from_dict(json.loads(calibrator)), threshold
                )
                active = ActiveModel(
                    scorer=scorer,
                    calibration_version=version,
                    bands=PriorityBands.resolve(self.band_settings, threshold),
                )
                self._local = (version, active)
                logger.info(
                    "local calibration in use",
                    extra={"calibration_version": version, "threshold": threshold},
                )
            return self._local[1]

    __call__ = model
