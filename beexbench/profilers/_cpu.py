"""This host's CPU as the environment section and the roofline cache key name it (model string,
the ISA flags that matter for the kernels), read from /proc/cpuinfo (sysctl on macOS)."""
from __future__ import annotations

import platform
import subprocess
import sys
from pathlib import Path
from typing import Mapping

# CPU flags that matter for these kernels (SIMD width, popcount, int8/bf16 dot products).
_RELEVANT_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "popcnt", "bmi2", "avx_vnni", "amx",
                   "neon", "asimd", "asimddp", "sve", "sve2", "i8mm", "bf16", "fphp", "asimdhp")
_CPUINFO = Path("/proc/cpuinfo")


def _cpuinfo_fields(path: Path = _CPUINFO) -> dict[str, str]:
    """The first value of each key in /proc/cpuinfo (empty off Linux)."""
    fields: dict[str, str] = {}
    try:
        text = path.read_text()
    except OSError:
        return fields
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() not in fields:
            fields[key.strip()] = value.strip()
    return fields


def cpu_model() -> str:
    """A human CPU model string on Linux (x86 and ARM), macOS and elsewhere."""
    info = _cpuinfo_fields()
    for key in ("model name", "Model", "Hardware", "cpu model"):
        if info.get(key):
            return info[key]
    if sys.platform == "darwin":
        try:
            out = subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True,
                                 text=True, timeout=5)
            if out.stdout.strip():
                return out.stdout.strip()
        except (OSError, subprocess.SubprocessError):
            pass
    return platform.processor() or platform.machine() or "unknown"


def cpu_flags(info: Mapping[str, str] | None = None) -> list[str]:
    """SIMD/ISA flags relevant to our kernels (x86 ``flags`` or ARM ``Features``)."""
    info = _cpuinfo_fields() if info is None else info
    raw = set((info.get("flags") or info.get("Features") or "").split())
    if not raw and platform.machine() in ("arm64", "aarch64"):
        raw = {"neon", "asimd"}  # mandatory on AArch64 (macOS has no /proc/cpuinfo)
    return sorted(f for f in raw if f in _RELEVANT_FLAGS or f.startswith(("avx512", "amx")))
