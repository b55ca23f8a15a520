"""The network's forward pass with every head, exported once to ONNX in memory.

OpenVINO and ONNX Runtime both start from these bytes: one trace of the network
serves both (reading ONNX into OpenVINO is several times quicker than converting the
PyTorch module directly, and nothing is written to disk).
"""

from __future__ import annotations

import io
import logging
import time
import warnings

import torch
from torch import nn

from chestaid.models import ChestNet, Heads
from chestaid.runtimes.base import RuntimeUnavailableError

logger = logging.getLogger(__name__)

INPUT_NAME = "input"
# The order of the exported outputs; the orientation head is left out when absent.
OUTPUT_NAMES = ("logits", "orientation", "feature_map", "pooled")


class _AllHeads(nn.Module):
    """A ChestNet whose forward returns every head as a tuple (what an exporter traces)."""

    def __init__(self, model: ChestNet) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        heads = self.model.forward_heads(x)
        if heads.orientation is None:
            return heads.logits, heads.feature_map, heads.pooled
        return heads.logits, heads.orientation, heads.feature_map, heads.pooled


def output_names(model: ChestNet) -> tuple[str, ...]:
    """The names of the exported outputs of ``model``, in order."""
    if model.orientation is None:
        return tuple(n for n in OUTPUT_NAMES if n != "orientation")
    return OUTPUT_NAMES


def heads_from_outputs(names: tuple[str, ...], outputs: list[torch.Tensor]) -> Heads:
    """The :class:`Heads` of one exported pass from its outputs, named as exported."""
    by_name = dict(zip(names, outputs, strict=True))
    return Heads(
        logits=by_name["logits"],
        orientation=by_name.get("orientation"),
        feature_map=by_name["feature_map"],
        pooled=by_name["pooled"],
    )


def export_onnx(model: ChestNet, input_size: int) -> bytes:
    """The ONNX graph of ``model``'s every head, any batch size, inputs (N, 1, S, S).

    Raises:
        RuntimeUnavailableError: the export failed (for example an exporter missing).
    """
    start = time.perf_counter()
    buffer = io.BytesIO()
    example = torch.zeros(1, 1, input_size, input_size)
    names = output_names(model)
    try:
        with warnings.catch_warnings():
            # The TorchScript exporter warns that it is the legacy path; it is the one
            # that needs no further packages.
            warnings.simplefilter("ignore")
            torch.onnx.export(
                _AllHeads(model.cpu().eval()),
                (example,),
                buffer,  # type: ignore[arg-type]  # the TorchScript exporter writes to any binary file
                input_names=[INPUT_NAME],
                output_names=list(names),
                dynamic_axes={INPUT_NAME: {0: "batch"}, **{n: {0: "batch"} for n in names}},
                dynamo=False,
            )
    except (ImportError, RuntimeError, ValueError, TypeError) as exc:
        raise RuntimeUnavailableError(f"ONNX export failed: {exc}") from exc
    data = buffer.getvalue()
    logger.info(
        "network exported to ONNX (%.1f MB) in %.1f s", len(data) / 1e6, time.perf_counter() - start
    )
    return data
