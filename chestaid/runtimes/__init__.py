"""Inference runtimes: the network's every head from one forward pass, by the fastest
engine on this CPU that gives the reference's answers.

PyTorch eager in float32 is the reference; OpenVINO and ONNX Runtime (optional
packages) and reduced precision (bfloat16, only where the CPU has it natively) are
used only after agreeing with it at load (:mod:`chestaid.runtimes.agreement`).
"""

import os

# The PyPI build of ONNX Runtime carries Microsoft's telemetry, which writes a device ID
# and an event store under the home directory when its first session starts. A node on
# a hospital network sends and keeps nothing it was not configured to. The switch is
# read when the library loads, so it is set here, before any runtime can import it.
os.environ["ORT_DISABLE_TELEMETRY"] = "1"

from chestaid.runtimes.agreement import LOGIT_TOLERANCE, MIN_CAM_CORRELATION, Agreement
from chestaid.runtimes.base import Precision, Runtime, RuntimeUnavailableError
from chestaid.runtimes.cpu import (
    openvino_bf16_native,
    parse_cpu_flags,
    parse_cpu_name,
    torch_bf16_native,
)
from chestaid.runtimes.selection import (
    PRECISION_CHOICES,
    RUNTIME_NAMES,
    PrecisionChoice,
    RuntimeName,
    Selection,
    Trial,
    select_runtime,
)
from chestaid.runtimes.torch_eager import TorchRuntime

__all__ = [
    "LOGIT_TOLERANCE",
    "MIN_CAM_CORRELATION",
    "PRECISION_CHOICES",
    "RUNTIME_NAMES",
    "Agreement",
    "Precision",
    "PrecisionChoice",
    "Runtime",
    "RuntimeName",
    "RuntimeUnavailableError",
    "Selection",
    "TorchRuntime",
    "Trial",
    "openvino_bf16_native",
    "parse_cpu_flags",
    "parse_cpu_name",
    "select_runtime",
    "torch_bf16_native",
]
