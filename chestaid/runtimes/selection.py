"""Choosing the runtime for this machine: by setting, or by measuring the ones that agree.

``runtime`` "auto" tries every runtime installed here (PyTorch eager, PyTorch
channels-last, OpenVINO, ONNX Runtime), each in float32 and, where the CPU computes
it natively, in bfloat16; a named runtime tries only that one. Each candidate other
than the reference (PyTorch eager float32) must agree with it
(:mod:`chestaid.runtimes.agreement`) or is refused, with the reason logged. Among
those left, the fastest forward pass at batch 1 on the bundle's input size is used;
with no candidate left, the reference is.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from chestaid.models import ChestNet
from chestaid.preprocess import PreprocessSpec
from chestaid.runtimes.agreement import Agreement, Decide, agreement_inputs, compare_heads
from chestaid.runtimes.base import Precision, Runtime, RuntimeUnavailableError
from chestaid.runtimes.cpu import cpu_flags, openvino_bf16_native, torch_bf16_native
from chestaid.runtimes.export import export_onnx, output_names
from chestaid.runtimes.onnx_runtime import OnnxRuntime
from chestaid.runtimes.openvino_cpu import OpenVinoRuntime, openvino_capabilities
from chestaid.runtimes.torch_eager import TorchRuntime

logger = logging.getLogger(__name__)

RuntimeName = Literal["auto", "torch", "openvino", "onnxruntime"]
PrecisionChoice = Literal["auto", "f32", "bf16"]
RUNTIME_NAMES: tuple[RuntimeName, ...] = ("auto", "torch", "openvino", "onnxruntime")
PRECISION_CHOICES: tuple[PrecisionChoice, ...] = ("auto", "f32", "bf16")


@dataclass(frozen=True)
class Trial:
    """One candidate runtime as selection found it."""

    label: str
    forward_ms: float | None  # median forward pass at batch 1; None when not measured
    agreement: Agreement | None  # None for the reference itself, or when it did not run
    refused: str | None  # why it was not eligible (None: eligible)


@dataclass(frozen=True)
class Selection:
    """The runtime chosen and every candidate tried on the way."""

    runtime: Runtime
    trials: tuple[Trial, ...]


def _precisions(choice: PrecisionChoice, native: bool, engine: str) -> list[Precision]:
    """The precisions to try for one engine: bfloat16 only where native."""
    if choice == "f32":
        return ["f32"]
    if choice == "bf16" and not native:
        logger.warning(
            "precision bf16 asked for, but %s has no native bfloat16 on this CPU: float32", engine
        )
        return ["f32"]
    if choice == "bf16":
        return ["bf16"]
    return ["bf16", "f32"] if native else ["f32"]


@dataclass
class _Exported:
    """The ONNX export, made on first need and shared by OpenVINO and ONNX Runtime."""

    model: ChestNet
    size: int
    onnx: bytes | None = None

    def get(self) -> bytes:
        if self.onnx is None:
            self.onnx = export_onnx(self.model, self.size)
        return self.onnx


def _unavailable(error: RuntimeUnavailableError) -> Runtime:
    """A candidate that cannot be built here: it raises why."""
    raise error


def candidates(
    model: ChestNet,
    *,
    runtime: RuntimeName,
    precision: PrecisionChoice,
    size: int,
    threads: int,
    cache_dir: Path | None,
    cpu: frozenset[str],
) -> Iterator[tuple[str, Callable[[], Runtime]]]:
    """(label, factory) of every candidate to try, in order of preference."""
    exported = _Exported(model, size)
    names = output_names(model)
    if runtime in ("auto", "torch"):
        for p in _precisions(precision, torch_bf16_native(cpu), "PyTorch"):
            if p == "f32" and runtime == "auto":
                yield "torch-cl-f32", lambda: TorchRuntime(model, channels_last=True)
            elif p == "bf16":
                yield (
                    "torch-cl-bf16",
                    lambda: TorchRuntime(model, precision="bf16", channels_last=True),
                )
    if runtime in ("auto", "openvino"):
        try:
            native = openvino_bf16_native(openvino_capabilities())
        except RuntimeUnavailableError as exc:
            yield "openvino", functools.partial(_unavailable, exc)
        else:
            for p in _precisions(precision, native, "OpenVINO"):
                yield (
                    f"openvino-{p}",
                    lambda p=p: OpenVinoRuntime(  # type: ignore[misc]
                        exported.get(), names, precision=p, threads=threads, cache_dir=cache_dir
                    ),
                )
    if runtime in ("auto", "onnxruntime") and precision != "bf16":
        yield "onnxruntime-f32", lambda: OnnxRuntime(exported.get(), names, threads=threads)


def forward_ms(runtimes: list[Runtime], batch: torch.Tensor, *, repeats: int) -> list[float]:
    """Median wall-clock milliseconds of each runtime's forward pass, after an untimed one.

    The runtimes take turns, pass by pass, so a change of load on a shared machine
    falls on all of them alike.
    """
    for runtime in runtimes:
        runtime.forward_heads(batch)
    samples: list[list[float]] = [[] for _ in runtimes]
    for _ in range(repeats):
        for runtime, out in zip(runtimes, samples, strict=True):
            start = time.perf_counter()
            runtime.forward_heads(batch)
            out.append(time.perf_counter() - start)
    return [float(np.median(s)) * 1000.0 for s in samples]


def select_runtime(
    model: ChestNet,
    spec: PreprocessSpec,
    *,
    decide: Decide,
    runtime: RuntimeName = "auto",
    precision: PrecisionChoice = "auto",
    device: str | torch.device = "cpu",
    threads: int | None = None,
    cache_dir: Path | None = None,
    repeats: int = 5,
    cpu: frozenset[str] | None = None,
    extra: tuple[tuple[str, Callable[[], Runtime]], ...] = (),
) -> Selection:
    """The runtime to score with on this machine, and what was tried.

    Args:
        model: the network (its PyTorch float32 eager pass is the reference).
        spec: the bundle's preprocessing (input size; agreement inputs).
        decide: logits -> decisions at the governed threshold.
        runtime: "auto" or one runtime's name.
        precision: "auto" (bfloat16 where native, else float32), "f32" or "bf16".
        device: a device other than the CPU runs PyTorch only.
        threads: threads for OpenVINO and ONNX Runtime (default: PyTorch's count).
        cache_dir: where OpenVINO may keep compiled networks (None: nowhere).
        repeats: timed forward passes per candidate when several are eligible.
        cpu: the CPU's flags (default: this machine's).
        extra: further candidates to try after the rest (tests).

    Returns:
        The chosen runtime and the trials that led to it.
    """
    reference = TorchRuntime(model, device=device)
    if torch.device(device).type != "cpu" or (runtime == "torch" and precision == "f32"):
        return Selection(reference, (Trial(reference.label, None, None, None),))
    threads = threads or torch.get_num_threads()
    inputs = agreement_inputs(spec)
    expected = reference.forward_heads(inputs)
    weight = model.classifier.weight.detach()
    timing = torch.zeros(1, 1, spec.input_size, spec.input_size)
    eligible: list[tuple[Runtime, Trial]] = []
    if runtime in ("auto", "torch"):  # the reference is a PyTorch runtime in float32
        eligible.append((reference, Trial(reference.label, None, None, None)))
    trials: list[Trial] = []
    for label, build in (
        *candidates(
            model,
            runtime=runtime,
            precision=precision,
            size=spec.input_size,
            threads=threads,
            cache_dir=cache_dir,
            cpu=cpu_flags() if cpu is None else cpu,
        ),
        *extra,
    ):
        try:
            candidate = build()
        except RuntimeUnavailableError as exc:
            logger.info("runtime %s not available: %s", label, exc)
            trials.append(Trial(label, None, None, f"not available: {exc}"))
            continue
        agreement = compare_heads(expected, candidate.forward_heads(inputs), weight, decide)
        if not agreement.agrees:
            reason = "; ".join(agreement.reasons())
            logger.warning("runtime %s refused: it disagrees with torch-f32: %s", label, reason)
            trials.append(Trial(label, None, agreement, f"disagrees: {reason}"))
            continue
        eligible.append((candidate, Trial(label, None, agreement, None)))
    if not eligible:
        logger.warning("no runtime asked for (%s, %s) is usable: torch-f32", runtime, precision)
        return Selection(reference, (*trials, Trial(reference.label, None, None, None)))
    if len(eligible) > 1:
        times = forward_ms([rt for rt, _ in eligible], timing, repeats=repeats)
        eligible = [
            (rt, Trial(t.label, ms, t.agreement, None))
            for (rt, t), ms in zip(eligible, times, strict=True)
        ]
    chosen, _ = min(eligible, key=lambda e: e[1].forward_ms or 0.0)
    trials.extend(t for _, t in eligible)
    logger.info(
        "inference runtime %s chosen (%s)",
        chosen.label,
        ", ".join(
            f"{t.label} {t.forward_ms:.1f} ms"
            if t.forward_ms is not None
            else f"{t.label} {t.refused or 'not timed'}"
            for t in trials
        ),
    )
    return Selection(chosen, tuple(trials))
