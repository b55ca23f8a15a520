"""Whether this CPU computes in bfloat16 natively (reduced precision is used only then), and its name."""

from __future__ import annotations

import functools
import logging
from collections.abc import Collection
from pathlib import Path

logger = logging.getLogger(__name__)

# Instruction-set flags (as /proc/cpuinfo names them) under which PyTorch's bfloat16
# kernels run natively rather than emulated (emulated bf16 is slower than float32).
NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


def torch_bf16_native(flags: Collection[str]) -> bool:
    """Whether PyTorch's bfloat16 autocast runs natively on a CPU with these flags."""
    return bool(NATIVE_BF16_FLAGS & set(flags))


def openvino_bf16_native(capabilities: Collection[str]) -> bool:
    """Whether OpenVINO's CPU plugin offers bfloat16, given its OPTIMIZATION_CAPABILITIES."""
    return "BF16" in {c.upper() for c in capabilities}


def parse_cpu_flags(cpuinfo: str) -> frozenset[str]:
    """The flags of the first processor in the text of /proc/cpuinfo (empty when none)."""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in {"flags", "Features"}:
            return frozenset(value.split())
    return frozenset()


@functools.cache
def _cpuinfo() -> str | None:
    """The text of /proc/cpuinfo, read once (None where it is not readable)."""
    try:
        return Path("/proc/cpuinfo").read_text("utf-8", errors="replace")
    except OSError:
        return None


def cpu_flags() -> frozenset[str]:
    """This machine's CPU flags (empty where /proc/cpuinfo is not readable)."""
    text = _cpuinfo()
    if text is None:
        logger.info("no /proc/cpuinfo: bfloat16 is taken as not native")
        return frozenset()
    return parse_cpu_flags(text)


def parse_cpu_name(cpuinfo: str) -> str | None:
    """The model name of the first processor in the text of /proc/cpuinfo, if it has one."""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and value.strip():
            return value.strip()
    return None


def cpu_name() -> str:
    """This machine's CPU model name (``unknown CPU`` where /proc/cpuinfo does not say)."""
    text = _cpuinfo()
    return (parse_cpu_name(text) if text is not None else None) or "unknown CPU"
