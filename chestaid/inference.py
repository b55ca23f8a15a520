"""Scoring: model input -> logit -> calibrated probability, with Grad-CAM from the same pass.

One forward pass gives both the logit and the last feature map; the Grad-CAM map
is computed from that map and the head's weights (exact for the pooled-linear heads
of every ChestAid backbone), so explaining a score costs almost nothing on top of
scoring it.

The pass is run by a :class:`~chestaid.runtimes.Runtime`: PyTorch as it is by default,
or the engine :func:`~chestaid.runtimes.select_runtime` chose for this CPU (OpenVINO,
ONNX Runtime, bfloat16 where native). Every runtime returns the feature map from the
same pass as the logit, so the map stays exact. The calibrator maps the runtime's
logits; a runtime other than PyTorch float32 is used only when its logits agree with
the ones the calibrator was fitted on within 0.05 and its decisions at the governed
threshold are identical, which is what keeps the calibration valid for it.

An N-class bundle (:mod:`chestaid.class_head`) is scored the same way: the "logit"
is its calibrated log-odds of "not normal", the score the probability of it, the
map the exact Grad-CAM of those log-odds, and each prediction carries the calibrated
probability of every class besides.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from chestaid.assessment import (
    ASSESSABLE,
    Assessment,
    AssessmentSettings,
    Evidence,
    FeatureDensity,
    assess,
    image_statistics,
    not_assessable,
)
from chestaid.bundle import Bundle
from chestaid.calibration import Calibrator
from chestaid.class_head import ClassHead, ClassProbabilities
from chestaid.gradcam import class_activation_map, normalise_map, weighted_activation_map
from chestaid.imaging import DEFAULT_MAX_PIXELS, GreyImage, read_for_scoring
from chestaid.models import ChestNet, Heads
from chestaid.preprocess import PreprocessSpec, preprocess
from chestaid.runtimes import (
    PrecisionChoice,
    Runtime,
    RuntimeName,
    TorchRuntime,
    Trial,
    select_runtime,
)

logger = logging.getLogger(__name__)

# Below a threshold the bundle has not governed, the score is reported but nothing
# is flagged: an uncalibrated model must not drive triage by accident.
UNGOVERNED_THRESHOLD = float("nan")


@dataclass(frozen=True)
class Prediction:
    """The score of one image and its explanation."""

    logit: float  # an N-class bundle's: the calibrated log-odds of "not normal"
    score: float  # calibrated probability of pneumonia (N classes: of "not normal")
    threshold: float  # governed threshold on the calibrated score (nan if none)
    above_threshold: bool
    cam: np.ndarray  # Grad-CAM at feature-map resolution, float32, 0..1
    model_version: str
    # Whether the image could be judged at all. When not, ``score`` and ``logit`` are
    # kept for audit only: never banded, flagged or overlaid (above_threshold is False).
    assessment: Assessment = ASSESSABLE
    # An N-class bundle's calibrated probability of each class, in the bundle's order
    # (they sum to one); empty for a binary bundle.
    class_probabilities: ClassProbabilities = ()


class Scorer:
    """Scores model inputs with a network, a calibrator and a governed threshold."""

    def __init__(
        self,
        model: ChestNet,
        calibrator: Calibrator,
        *,
        spec: PreprocessSpec,
        threshold: float | None,
        model_version: str,
        device: str | torch.device = "cpu",
        assessment: AssessmentSettings | None = None,
        density: FeatureDensity | None = None,
        runtime: Runtime | None = None,
        runtime_trials: tuple[Trial, ...] = (),
        class_head: ClassHead | None = None,
    ) -> None:
        self.model = model.to(device).eval()
        # What runs the forward pass (PyTorch eager float32 unless given), and the
        # candidates tried when it was chosen.
        self.runtime = runtime if runtime is not None else TorchRuntime(self.model, device=device)
        self.runtime_trials = runtime_trials
        self.calibrator = calibrator
        self.spec = spec
        self.threshold = UNGOVERNED_THRESHOLD if threshold is None else float(threshold)
        self.model_version = model_version
        self.device = torch.device(device)
        # None: no checks (a bundle made before them, or a test's tiny model); every
        # image is scored as the bundle always scored it.
        self.assessment = assessment
        self.density = density
        # An N-class network's classes and their calibrator; None for one logit.
        self.class_head = class_head

    @property
    def runtime_name(self) -> str:
        """The runtime and precision scoring, e.g. ``openvino-f32`` or ``torch-f32``."""
        return self.runtime.label

    def decide(self, logits: np.ndarray) -> np.ndarray:
        """The decisions (above the governed threshold) for these logits; all False without one."""
        probs = self.calibrator.predict_proba(np.asarray(logits, dtype=np.float64))
        return np.asarray(probs >= self.threshold)

    @classmethod
    def from_bundle(
        cls,
        bundle: Bundle,
        *,
        device: str | torch.device = "cpu",
        runtime: RuntimeName = "torch",
        precision: PrecisionChoice = "f32",
        threads: int | None = None,
        cache_dir: Path | None = None,
    ) -> Scorer:
        """A scorer using a loaded bundle's model, calibrator and threshold.

        Args:
            bundle: the loaded bundle.
            device: where PyTorch runs (a device other than the CPU runs PyTorch only).
            runtime: "torch" (the default), a named runtime or "auto"; see
                :func:`chestaid.runtimes.select_runtime`. A runtime that is not installed
                or does not agree with PyTorch float32 is refused and PyTorch is used.
            precision: "f32" (the default), "bf16" or "auto" (bfloat16 where native).
            threads: threads for OpenVINO and ONNX Runtime (default: PyTorch's count).
            cache_dir: where OpenVINO may keep compiled networks between starts.
        """
        scorer = cls(
            bundle.model,
            bundle.calibrator,
            spec=bundle.manifest.preprocessing,
            threshold=bundle.threshold,
            model_version=bundle.manifest.version,
            device=device,
            assessment=bundle.assessment,
            density=bundle.density,
            class_head=bundle.class_head,
        )
        if runtime == "torch" and precision == "f32":
            return scorer
        if scorer.class_head is not None:
            # The agreement checks compare a binary network's one logit; an N-class
            # network is not checked by them, so it runs only as it was calibrated.
            logger.info(
                "N-class bundle %s is scored with PyTorch float32: runtime %r precision %r "
                "is not checked for networks of more than one logit",
                bundle.manifest.version,
                runtime,
                precision,
            )
            return scorer
        selection = select_runtime(
            scorer.model,
            scorer.spec,
            decide=scorer.decide,
            runtime=runtime,
            precision=precision,
            device=device,
            threads=threads,
            cache_dir=cache_dir,
        )
        scorer.runtime = selection.runtime
        scorer.runtime_trials = selection.trials
        return scorer

    def with_calibration(self, calibrator: Calibrator, threshold: float) -> Scorer:
        """A scorer sharing this one's network but another calibration and threshold."""
        return Scorer(
            self.model,
            calibrator,
            spec=self.spec,
            threshold=threshold,
            model_version=self.model_version,
            device=self.device,
            assessment=self.assessment,
            density=self.density,
            runtime=self.runtime,
            runtime_trials=self.runtime_trials,
            class_head=self.class_head,
        )

    def _triage_logits(self, heads: Heads) -> tuple[np.ndarray, np.ndarray | None]:
        """The logits (N,) the calibrator maps and, for an N-class network, the calibrated
        class probabilities (N, K) they come from."""
        raw = heads.logits.float().cpu().numpy().astype(np.float64)
        if self.class_head is None:
            return raw[:, 0], None
        probs = self.class_head.probabilities(raw)
        return self.class_head.triage_logits(probs), probs

    def _cams(self, heads: Heads) -> np.ndarray:
        """Normalised Grad-CAM maps (N, h, w) of the triage logit, from the pass alone."""
        weight = self.model.classifier.weight
        if self.class_head is None:
            cams = class_activation_map(heads.feature_map, weight, 0)
        else:
            raw = heads.logits.float().cpu().numpy().astype(np.float64)
            channels = self.class_head.cam_weights(raw, weight)
            cams = weighted_activation_map(heads.feature_map, channels)
        out: np.ndarray = normalise_map(cams).cpu().numpy().astype(np.float32)
        return out

    @torch.inference_mode()
    def logits_and_cams(self, batch: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """Logits (N,) and normalised Grad-CAM maps (N, h, w) from one forward pass."""
        heads = self.runtime.forward_heads(batch)
        return self._triage_logits(heads)[0], self._cams(heads)

    @torch.inference_mode()
    def logits(self, batch: torch.Tensor) -> np.ndarray:
        """Logits (N,) only: the plain forward pass."""
        return self._triage_logits(self.runtime.forward_heads(batch))[0]

    @torch.inference_mode()
    def _passes(
        self, batch: torch.Tensor
    ) -> tuple[np.ndarray, np.ndarray, list[Evidence], np.ndarray | None]:
        """Logits, Grad-CAM maps, the assessment evidence and (N classes) the class
        probabilities of one forward pass."""
        heads = self.runtime.forward_heads(batch)
        logits, probs = self._triage_logits(heads)
        cams = self._cams(heads)
        if self.assessment is None:  # no checks: nothing more to compute
            return logits, cams, [], probs
        spread, structure = image_statistics(batch * self.spec.std + self.spec.mean)
        orientation = (
            torch.softmax(heads.orientation.float(), dim=1).cpu().numpy()
            if heads.orientation is not None
            else None
        )
        distances = (
            self.density.distance(heads.pooled.float().cpu().numpy())
            if self.density is not None
            else None
        )
        evidence = [
            Evidence(
                spread=float(spread[i]),
                structure=float(structure[i]),
                orientation=orientation[i] if orientation is not None else None,
                feature_distance=float(distances[i]) if distances is not None else None,
            )
            for i in range(batch.shape[0])
        ]
        return logits, cams, evidence, probs

    def _labelled(self, probs: np.ndarray | None, i: int) -> ClassProbabilities:
        """Image ``i``'s class probabilities by name; empty for a binary network."""
        if self.class_head is None or probs is None:
            return ()
        return self.class_head.labelled(probs[i])

    def _judge(
        self,
        item: torch.Tensor,
        logit: float,
        cam: np.ndarray,
        evidence: Evidence,
        classes: ClassProbabilities,
    ) -> tuple[float, np.ndarray, Assessment, ClassProbabilities]:
        """Assess one input; a radiograph certainly turned is turned upright and scored again.

        The returned map always lies on the image as received; the logit and the class
        probabilities are those of the pass that was kept.
        """
        if self.assessment is None:
            return logit, cam, ASSESSABLE, classes
        verdict = assess(evidence, self.assessment)
        if isinstance(verdict, Assessment):
            return logit, cam, verdict, classes
        turns = (4 - verdict) % 4
        upright = torch.rot90(item, turns, dims=(-2, -1)).unsqueeze(0)
        logits, cams, again, probs = self._passes(upright)
        second = assess(again[0], self.assessment)  # the same settings, now upright
        if isinstance(second, int):
            return (
                logit,
                cam,
                not_assessable(
                    "orientation", "the image could not be turned upright with certainty"
                ),
                classes,
            )
        upright_map = np.rot90(cams[0], -turns).copy()
        if not second.assessable:
            return float(logits[0]), upright_map, second, self._labelled(probs, 0)
        turned = Assessment(assessable=True, quarter_turns=turns)
        return float(logits[0]), upright_map, turned, self._labelled(probs, 0)

    def score_batch(self, batch: torch.Tensor) -> list[Prediction]:
        """Score a batch of model inputs of shape (N, 1, S, S), assessing each first."""
        logits, cams, evidence, classes = self._passes(batch)
        judged = (
            [
                self._judge(
                    batch[i], float(logits[i]), cams[i], evidence[i], self._labelled(classes, i)
                )
                for i in range(batch.shape[0])
            ]
            if evidence
            else [
                (float(z), cam, ASSESSABLE, self._labelled(classes, i))
                for i, (z, cam) in enumerate(zip(logits, cams, strict=True))
            ]
        )
        probs = self.calibrator.predict_proba(np.array([z for z, _, _, _ in judged]))
        return [
            Prediction(
                logit=z,
                score=float(p),
                threshold=self.threshold,
                # False when the threshold is nan or the image could not be judged.
                above_threshold=bool(p >= self.threshold) and verdict.assessable,
                cam=cam,
                model_version=self.model_version,
                assessment=verdict,
                class_probabilities=named,
            )
            for (z, cam, verdict, named), p in zip(judged, probs, strict=True)
        ]

    def score_pixels(self, pixels: np.ndarray) -> Prediction:
        """Score one grey image (float [0, 1], 2-D) through the shared preprocessing."""
        return self.score_batch(preprocess(pixels, self.spec).unsqueeze(0))[0]

    def score_images(self, images: Sequence[GreyImage]) -> list[Prediction]:
        """Score several already-read images in one batch."""
        batch = torch.stack([preprocess(im.pixels, self.spec) for im in images])
        return self.score_batch(batch)

    def score_file(
        self, path: str | os.PathLike[str], *, max_pixels: int = DEFAULT_MAX_PIXELS
    ) -> tuple[GreyImage, Prediction]:
        """Read, preprocess and score one file; returns the image read and its prediction.

        Raises:
            ImageError: as :func:`chestaid.imaging.read_for_scoring` refuses the file.
        """
        image = read_for_scoring(path, max_pixels=max_pixels).image
        return image, self.score_pixels(image.pixels)
