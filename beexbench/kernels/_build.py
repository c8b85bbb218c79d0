"""Build, cache and load the C++ kernels (``binary_gemm.cpp``).

The shared library is built once with ``torch.utils.cpp_extension.load`` into
``$BEEXBENCH_CACHE/kernels/<key>`` (default ``~/.cache/beexbench/kernels/<key>``).
``<key>`` hashes the source, the torch and Python versions, the compiler
flags, the compiler command and the CPU (architecture and SIMD flags), so a
later process loads the cached ``.so`` directly without invoking ninja, and a
cache shared between different machines never hands one the wrong build.

Loading verifies the library's recorded sha256 and rebuilding holds a lock with
dead-owner recovery and a timeout: see :mod:`beexbench._native_build`.

The SIMD paths use function-level ``target`` attributes plus run-time CPU
checks, so the build itself never uses ``-march=native``.
"""

from __future__ import annotations

import os
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .. import _native_build
from ..settings import SettingError
from .._native_build import cache_root  # noqa: F401  (re-exported)

SOURCE = Path(__file__).with_name("binary_gemm.cpp")
# headers the source includes on AArch64 (its "neon" backend): part of the build key everywhere
HEADERS = (Path(__file__).with_name("bits_core.h"), Path(__file__).with_name("neon_backend.h"))
# -ffp-contract=off: the epilogue (alpha * count + bias) rounds as the float reference does on any
# compiler; an FMA-contracted build would round it once instead of twice
CFLAGS = ["-O3", "-fno-math-errno", "-ffp-contract=off", "-fopenmp", "-Wall", "-Wno-unused-function"]
# at::parallel_for is an inline OpenMP loop in the headers: without -fopenmp
# it silently runs on one thread.  libgomp resolves to the copy torch loaded.
LDFLAGS = ["-fopenmp"]
OPS_NAMESPACE = "beexbench_kernels"
_SIMD_FLAGS = ("popcnt", "avx2", "avx512f", "avx512vpopcntdq", "avx512bw", "asimd", "neon", "sve")


@dataclass
class BuildInfo:
    """What happened when the native kernels were (not) loaded."""

    loaded: bool = False
    compiled: bool = False  # True if this process ran the compiler
    seconds: float = 0.0  # time spent building / loading
    library: str | None = None
    cache_dir: str | None = None
    error: str | None = None
    cpu: str = ""
    extra: dict = field(default_factory=dict)


def cpu_signature() -> str:
    """Architecture plus the SIMD feature flags that matter for these kernels."""
    flags: set[str] = set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                key = line.split(":", 1)[0].strip().lower()
                if key in ("flags", "features"):
                    flags.update(line.split(":", 1)[1].split())
                    break
    except OSError:
        pass
    present = [f for f in _SIMD_FLAGS if f in flags]
    return f"{platform.machine()}:{'+'.join(present) or 'baseline'}"


def cache_key() -> str:
    parts = (torch.__version__, sys.version, " ".join(CFLAGS + LDFLAGS), os.environ.get("CXX", "c++"),
             cpu_signature(), *(h.read_text() for h in HEADERS))
    return _native_build.cache_key(SOURCE, parts)


def extension() -> _native_build.Extension:
    key = cache_key()
    return _native_build.Extension(
        name=f"beexbench_binary_gemm_{key}", source=SOURCE, build_dir=cache_root() / key,
        cflags=tuple(CFLAGS), ldflags=tuple(LDFLAGS), what="the packed-bit kernels")


def load_native(verbose: bool = False) -> BuildInfo:
    """Build (or reuse) and load the extension; raises only for a bad ``BEEXBENCH_*`` setting
    (:class:`~beexbench.settings.SettingError`), any other failure is in ``error``."""
    info = BuildInfo(cpu=cpu_signature())
    t0 = time.perf_counter()
    try:
        ext = extension()
        info.cache_dir = str(ext.build_dir)
        info.compiled = _native_build.load(ext, verbose=verbose)
        info.library = str(ext.library)
        getattr(torch.ops, OPS_NAMESPACE).backend()  # the ops are really there
        info.loaded = True
    except SettingError:
        raise  # a bad BEEXBENCH_* value (cache folder, build timeout) is the user's to fix, never a fallback
    except Exception as exc:  # noqa: BLE001 - any failure means "use the fallback"
        msg = " ".join(str(exc).split())
        if len(msg) > 1200:
            msg = msg[:1200] + " ..."
        info.error = f"{type(exc).__name__}: {msg}"
    info.seconds = time.perf_counter() - t0
    return info
