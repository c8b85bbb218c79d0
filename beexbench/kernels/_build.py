"""Build, cache and load the C++ kernels (``binary_gemm.cpp``).

The shared library is built once with ``torch.utils.cpp_extension.load`` into
``$BEEXBENCH_CACHE/kernels/<key>`` (default ``~/.cache/beexbench/kernels/<key>``).
``<key>`` hashes the source, the torch and Python versions, the compiler
flags, the compiler command and the CPU (architecture and SIMD flags), so a
later process loads the cached ``.so`` directly without invoking ninja, and a
cache shared between different machines never hands one the wrong build.

The SIMD paths use function-level ``target`` attributes plus run-time CPU
checks, so the build itself never uses ``-march=native``.
"""

from __future__ import annotations

import hashlib
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

SOURCE = Path(__file__).with_name("binary_gemm.cpp")
CFLAGS = ["-O3", "-fno-math-errno", "-fopenmp", "-Wall", "-Wno-unused-function"]
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


def cache_root() -> Path:
    """``$BEEXBENCH_CACHE/kernels``, else ``$XDG_CACHE_HOME/beexbench/kernels``,
    else ``~/.cache/beexbench/kernels`` (same root as the data cache)."""
    env = os.environ.get("BEEXBENCH_CACHE")
    if env:
        return Path(env).expanduser() / "kernels"
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "beexbench" / "kernels"


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
    h = hashlib.sha256()
    h.update(SOURCE.read_bytes())
    for part in (
        torch.__version__,
        sys.version,
        " ".join(CFLAGS + LDFLAGS),
        os.environ.get("CXX", "c++"),
        cpu_signature(),
    ):
        h.update(b"\0" + part.encode())
    return h.hexdigest()[:16]


def load_native(verbose: bool = False) -> BuildInfo:
    """Build (or reuse) and load the extension; never raises."""
    info = BuildInfo(cpu=cpu_signature())
    t0 = time.perf_counter()
    try:
        key = cache_key()
        name = f"beexbench_binary_gemm_{key}"
        build_dir = cache_root() / key
        info.cache_dir = str(build_dir)
        lib = build_dir / f"{name}.so"
        # "lock" is cpp_extension's build baton: another process is still
        # building there, so go through load(), which waits for it.
        if lib.is_file() and not (build_dir / "lock").exists():
            torch.ops.load_library(str(lib))
        else:
            build_dir.mkdir(parents=True, exist_ok=True)
            from torch.utils import cpp_extension

            cpp_extension.load(
                name=name,
                sources=[str(SOURCE)],
                extra_cflags=CFLAGS,
                extra_ldflags=LDFLAGS,
                build_directory=str(build_dir),
                is_python_module=False,
                verbose=verbose,
            )
            info.compiled = True
        info.library = str(lib)
        getattr(torch.ops, OPS_NAMESPACE).backend()  # the ops are really there
        info.loaded = True
    except Exception as exc:  # noqa: BLE001 - any failure means "use the fallback"
        msg = " ".join(str(exc).split())
        if len(msg) > 1200:
            msg = msg[:1200] + " ..."
        info.error = f"{type(exc).__name__}: {msg}"
    info.seconds = time.perf_counter() - t0
    return info
