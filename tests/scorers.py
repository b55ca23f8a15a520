"""Scorers for tests: a tiny network with random weights, and predictions the ML core's
assessor gives (not assessable; turned upright) injected where the worker calls the
Scorer (``score_pixels``), until the real assessor scores them so."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from chestaid.assessment import Assessment, not_assessable
from chestaid.calibration import TemperatureScaling
from chestaid.inference import Prediction, Scorer
from chestaid.models import ChestNet, build_model
from chestaid.preprocess import PreprocessSpec
from daemon.serving import ActiveModel, PriorityBands
from daemon.settings import PrioritySettings

NOISE_DETAIL = "No image structure at the scale of anatomy."


class NotAssessableScorer(Scorer):
    """The tiny model's prediction, with the assessment the ML core gives noise.

    ``above_threshold`` is left as the score makes it: the service must not call a
    score it was told is not assessable.
    """

    def score_pixels(self, pixels: np.ndarray) -> Prediction:
        scored = super().score_pixels(pixels)
        return dataclasses.replace(scored, assessment=not_assessable("noise", NOISE_DETAIL))


class TurnedUprightScorer(Scorer):
    """Scores the image turned one quarter counter-clockwise, as the ML core turns one
    received on its side when its orientation is certain; like the ML core, it gives
    the map back on the image as received."""

    def score_pixels(self, pixels: np.ndarray) -> Prediction:
        scored = super().score_pixels(np.rot90(pixels, k=1))
        return dataclasses.replace(
            scored,
            cam=np.rot90(scored.cam, k=-1).copy(),
            assessment=Assessment(True, quarter_turns=1),
        )


def tiny_net(seed: int = 0) -> ChestNet:
    """A DenseNet-121 with random weights (scored at 64 x 64 by :func:`active_model`)."""
    torch.manual_seed(seed)
    return build_model("densenet121").eval()


def active_model(net: ChestNet, kind: type[Scorer] = Scorer) -> ActiveModel:
    """The model in service as the worker gets it: threshold 0.5, calibration version 3."""
    scorer = kind(
        net,
        TemperatureScaling(1.0),
        spec=PreprocessSpec(input_size=64),
        threshold=0.5,
        model_version="test-1",
    )
    bands = PriorityBands.resolve(PrioritySettings().bands, scorer.threshold)
    return ActiveModel(scorer=scorer, calibration_version=3, bands=bands)
