"""PyTorch eager execution: the reference every other runtime is checked against."""

from __future__ import annotations

import contextlib
import copy

import torch

from chestaid.models import ChestNet, Heads
from chestaid.runtimes.base import Precision, Runtime


class TorchRuntime(Runtime):
    """The model run by PyTorch as it is (float32, or bfloat16 autocast on a CPU with it).

    Args:
        model: the network, in evaluation mode.
        device: where it runs.
        precision: ``f32``, or ``bf16`` for CPU autocast (only offered where native).
        channels_last: run a copy of the network in channels-last memory layout, which
            oneDNN convolutions prefer; the given model is left as it is.
    """

    name = "torch"

    def __init__(
        self,
        model: ChestNet,
        *,
        device: str | torch.device = "cpu",
        precision: Precision = "f32",
        channels_last: bool = False,
    ) -> None:
        super().__init__(precision)
        self.device = torch.device(device)
        self.channels_last = channels_last
        if channels_last:
            model = copy.deepcopy(model).to(memory_format=torch.channels_last)
        self.model = model.to(self.device).eval()

    @property
    def label(self) -> str:
        """``torch-f32``, or ``torch-cl-f32`` / ``torch-cl-bf16`` for channels-last."""
        return f"torch-cl-{self.precision}" if self.channels_last else super().label

    @torch.inference_mode()
    def forward_heads(self, batch: torch.Tensor) -> Heads:
        """Every head of one forward pass, as float32."""
        x = batch.to(self.device)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        autocast = (
            torch.autocast("cpu", dtype=torch.bfloat16)
            if self.precision == "bf16"
            else contextlib.nullcontext()
        )
        with autocast:
            heads = self.model.forward_heads(x)
        return Heads(
            logits=heads.logits.float(),
            orientation=heads.orientation.float() if heads.orientation is not None else None,
            feature_map=heads.feature_map.float().contiguous(),
            pooled=heads.pooled.float(),
        )
