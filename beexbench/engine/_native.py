"""Build, cache and load the engine's native inference (``_engine.cpp``): the whole-model
op ``infer`` (one call per forward) and the per-block fused steps.

Built on first use next to the kernels' cache (``$BEEXBENCH_CACHE/kernels/engine-<key>``),
keyed by the source, torch, Python and compiler; loaded directly afterwards once its
recorded checksum matches (see :mod:`beexbench._native_build`). Used only
while the native packed-bit kernels run (the fused steps call them); otherwise, or if
the build fails (the reason is given by :func:`mode`), the engine runs its
Python module path, which computes the same values.  ``BEEXBENCH_ENGINE=python``
forces the Python path, ``BEEXBENCH_ENGINE=steps`` the per-block steps for every rule (a value
it does not know is a :class:`~beexbench.settings.SettingError`). Whether a model may run that
slower path is the deployment's to decide (:meth:`beexbench.engine.adapter.PackedBEExformer.implementation`:
it fails its cell unless ``BEEXBENCH_ALLOW_FALLBACK=1``); :func:`unavailable_reason` says why.
"""
from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

import torch

from .. import _native_build, kernels, settings
from ..settings import SettingError

SOURCE = Path(__file__).with_name("_engine.cpp")
# the header its AArch64 ("neon") loops include: part of the build key everywhere
HEADERS = (Path(__file__).parent.parent / "kernels" / "bits_core.h",)
# -ffp-contract=off: no FMA contraction, so the whole-model loops round like the kernels' epilogue;
# -fno-trapping-math: lets the float selects in those loops vectorise (no effect on results);
# -Wno-(maybe-)uninitialized: GCC 12 flags its own avx512fintrin.h (_mm512_undefined_*, GCC PR105593)
CFLAGS = ["-O3", "-fno-math-errno", "-fno-trapping-math", "-ffp-contract=off", "-Wall", "-Wno-unused-function",
          "-Wno-uninitialized", "-Wno-maybe-uninitialized"]
NAMESPACE = "beexbench_engine_native"
ENV_VAR = settings.ENGINE  # "python": the module path; "steps": the per-block C++ steps for every rule


def engine_choice() -> str:
    """What ``BEEXBENCH_ENGINE`` asks for: auto (also when unset), steps or python."""
    return settings.engine_choice()


class _State:
    lock = threading.Lock()
    tried = False
    ops = None
    reason: str | None = None


def _extension() -> _native_build.Extension:
    parts = (torch.__version__, sys.version, " ".join(CFLAGS), os.environ.get("CXX", "c++"),
             *(h.read_text() for h in HEADERS))
    key = _native_build.cache_key(SOURCE, parts)
    return _native_build.Extension(
        name=f"beexbench_engine_{key}", source=SOURCE, build_dir=_native_build.cache_root() / f"engine-{key}",
        cflags=tuple(CFLAGS), what="the packed engine's fused steps")


def _load() -> None:
    if _State.tried:
        return
    with _State.lock:
        if _State.tried:
            return
        try:
            _native_build.load(_extension(), verbose=settings.kernels_verbose())
            _State.ops = getattr(torch.ops, NAMESPACE)
            _State.ops.step, _State.ops.infer  # noqa: B018 - the ops are really there
        except SettingError:
            raise  # a bad BEEXBENCH_* value is the user's to fix, never a reason to run slower
        except Exception as exc:  # noqa: BLE001 - the Python path, with the reason (its deployment then fails unless allowed)
            msg = " ".join(str(exc).split())
            _State.reason = f"fused engine unavailable ({type(exc).__name__}: {msg[:600]})"
            _State.ops = None
        _State.tried = True


def ops():
    """The fused ops when they can run now (native kernels active), else None."""
    if engine_choice() == "python":
        return None
    if not kernels._State.initialised:
        kernels.backend()  # initialise the kernels (once: this runs on every inference call)
    if not kernels._State.native_ready:
        return None
    _load()
    return _State.ops


def unavailable_reason() -> str | None:
    """Why the native engine does not run in this process (None when it does)."""
    if ops() is not None:
        return None
    if engine_choice() == "python":
        return f"forced by {ENV_VAR}=python"
    if not kernels._State.native_ready:
        return f"the packed kernels run the PyTorch fallback ({kernels.fallback_reason() or 'native kernels not active'})"
    return _State.reason or "fused engine unavailable"


def mode() -> str:
    """The path the engine runs: native C++ (the whole-model op's instruction set), or the
    Python module path (with the reason when the native path cannot run)."""
    found = ops()
    if found is not None:
        return (f"fused C++: whole-model op ({found.engine_isa('')}) for the fractional-entropy, "
                "absolute-entropy and no-exit rules, per-block steps for the others")
    if engine_choice() == "python":
        return f"python module path ({ENV_VAR}=python)"
    if not kernels._State.native_ready:
        return "python module path (kernels run the PyTorch fallback)"
    return f"python module path ({_State.reason})"
