"""Build, cache and load the engine's fused C++ steps (``_engine.cpp``).

Built on first use next to the kernels' cache (``$BEEXBENCH_CACHE/kernels/engine-<key>``),
keyed by the source, torch, Python and compiler; loaded directly afterwards. Used only
while the native packed-bit kernels run (the fused steps call them); otherwise, or if
the build fails (the reason is kept in :func:`unavailable_reason`), the engine runs its
Python module path, which computes the same values.  ``BEEXBENCH_ENGINE=python``
forces the Python path.
"""
from __future__ import annotations

import hashlib
import os
import sys
import threading
from pathlib import Path

import torch

from .. import kernels
from ..kernels._build import cache_root

SOURCE = Path(__file__).with_name("_engine.cpp")
CFLAGS = ["-O3", "-fno-math-errno", "-Wall", "-Wno-unused-function"]
NAMESPACE = "beexbench_engine_native"
ENV_VAR = "BEEXBENCH_ENGINE"


class _State:
    lock = threading.Lock()
    tried = False
    ops = None
    reason: str | None = None


def _key() -> str:
    h = hashlib.sha256(SOURCE.read_bytes())
    for part in (torch.__version__, sys.version, " ".join(CFLAGS), os.environ.get("CXX", "c++")):
        h.update(b"\0" + part.encode())
    return h.hexdigest()[:16]


def _load() -> None:
    if _State.tried:
        return
    with _State.lock:
        if _State.tried:
            return
        try:
            key = _key()
            name = f"beexbench_engine_{key}"
            build_dir = cache_root() / f"engine-{key}"
            lib = build_dir / f"{name}.so"
            if lib.is_file() and not (build_dir / "lock").exists():
                torch.ops.load_library(str(lib))
            else:
                build_dir.mkdir(parents=True, exist_ok=True)
                from torch.utils import cpp_extension

                cpp_extension.load(name=name, sources=[str(SOURCE)], extra_cflags=CFLAGS,
                                   build_directory=str(build_dir), is_python_module=False,
                                   verbose=bool(os.environ.get("BEEXBENCH_KERNELS_VERBOSE")))
            _State.ops = getattr(torch.ops, NAMESPACE)
            _State.ops.step  # noqa: B018 - the ops are really there
        except Exception as exc:  # noqa: BLE001 - any failure means "use the Python path"
            msg = " ".join(str(exc).split())
            _State.reason = f"fused engine unavailable ({type(exc).__name__}: {msg[:600]})"
            _State.ops = None
        _State.tried = True


def ops():
    """The fused ops when they can run now (native kernels active), else None."""
    if os.environ.get(ENV_VAR, "").strip().lower() == "python":
        return None
    kernels.backend()  # initialise the kernels
    if not kernels._State.native_ready:
        return None
    _load()
    return _State.ops


def mode() -> str:
    """"fused C++" or "python" (with the reason when the fused path cannot run)."""
    if ops() is not None:
        return "fused C++ steps"
    if os.environ.get(ENV_VAR, "").strip().lower() == "python":
        return f"python module path ({ENV_VAR}=python)"
    if not kernels._State.native_ready:
        return "python module path (kernels run the PyTorch fallback)"
    return f"python module path ({_State.reason})"
