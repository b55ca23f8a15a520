"""What every inference runtime offers: one forward pass giving every head of a ChestNet."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar, Literal

import torch

from chestaid.errors import ChestAidError
from chestaid.models import Heads

Precision = Literal["f32", "bf16"]


class RuntimeUnavailableError(ChestAidError):
    """A runtime cannot run here (its package is not installed, or the export failed)."""


class Runtime(ABC):
    """Runs a ChestNet's forward pass and returns every head of it at once.

    The logits, the orientation logits, the last feature map and its pooled vector come
    from the same pass, so the exact Grad-CAM (feature map times head weights) explains
    exactly the score it sits beside. Implementations are safe to call from several
    threads at once and always return float32 tensors on the CPU (or on the model's
    device for PyTorch).
    """

    name: ClassVar[str]

    def __init__(self, precision: Precision) -> None:
        self.precision: Precision = precision

    @property
    def label(self) -> str:
        """The runtime and its precision, e.g. ``openvino-f32``: what logs and metrics show."""
        return f"{self.name}-{self.precision}"

    @abstractmethod
    def forward_heads(self, batch: torch.Tensor) -> Heads:
        """Every head of one forward pass for inputs of shape (N, 1, S, S)."""
