"""Datasets of development images, read through the one shared preprocessing function."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from chestaid.data import Example
from chestaid.imaging import DEFAULT_MAX_PIXELS
from chestaid.models import ChestNet
from chestaid.preprocess import PreprocessSpec, load_model_input


class ImageDataset(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """Model inputs and labels for a list of examples.

    Items are made by :func:`chestaid.preprocess.load_model_input`, the same function
    evaluation and serving use. With ``cache`` each input is computed once and kept
    in memory (the development images are small; decoding dominates otherwise).
    """

    def __init__(
        self,
        base: str | os.PathLike[str],
        examples: Sequence[Example],
        spec: PreprocessSpec,
        *,
        cache: bool = False,
        max_pixels: int = DEFAULT_MAX_PIXELS,
    ) -> None:
        self.base = Path(base)
        self.examples = list(examples)
        self.spec = spec
        self.max_pixels = max_pixels
        self._cache: list[torch.Tensor | None] | None = (
            [None] * len(self.examples) if cache else None
        )

    def __len__(self) -> int:
        return len(self.examples)

    @property
    def labels(self) -> np.ndarray:
        """Labels as an int64 array, in item order."""
        return np.array([e.label for e in self.examples], dtype=np.int64)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        x: torch.Tensor | None = self._cache[index] if self._cache is not None else None
        if x is None:
            x = load_model_input(
                self.base / self.examples[index].relpath, self.spec, max_pixels=self.max_pixels
            )
            if self._cache is not None:
                self._cache[index] = x
        return x, torch.tensor(float(self.examples[index].label))


@torch.inference_mode()
def collect_outputs(
    model: ChestNet, dataset: ImageDataset, *, batch_size: int = 32, device: str = "cpu"
) -> np.ndarray:
    """Every logit, shape (N, outputs), for every item of ``dataset``, in order, in eval mode."""
    was_training = model.training
    model.eval()
    out: list[np.ndarray] = []
    try:
        for x, _ in DataLoader(dataset, batch_size=batch_size, shuffle=False):
            out.append(model(x.to(device)).float().cpu().numpy())
    finally:
        model.train(was_training)
    outputs = model.classifier.out_features
    return np.concatenate(out).astype(np.float64) if out else np.zeros((0, outputs))


def collect_logits(
    model: ChestNet, dataset: ImageDataset, *, batch_size: int = 32, device: str = "cpu"
) -> np.ndarray:
    """Logits (N,) of the first output for every item of ``dataset``, in order, in eval mode."""
    return collect_outputs(model, dataset, batch_size=batch_size, device=device)[:, 0]
