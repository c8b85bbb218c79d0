"""Which implementation runs the kernels: the native C++ backends (built lazily on first
use by :mod:`._build`, verified against the fallback on odd shapes) or the pure-PyTorch
fallback (:mod:`._fallback`); ``BEEXBENCH_KERNELS`` picks one, :func:`set_backend` switches."""

from __future__ import annotations

import os
import threading
import warnings
from typing import Any

import torch

from beexbench import settings
from beexbench.errors import BeexError

from . import _fallback
from ._build import OPS_NAMESPACE, BuildInfo, load_native

FALLBACK = _fallback.NAME
NATIVE_BACKENDS = settings.KERNEL_NATIVE_NAMES  # best first
ENV_VAR = settings.KERNELS

class _State:
    lock = threading.Lock()
    initialised = False
    ops: Any = None  # torch.ops.beexbench_kernels when native kernels loaded
    build: BuildInfo | None = None
    reason: str | None = None  # why we run the fallback
    use_fallback = True
    native_ready = False  # initialised and running native kernels (fast path)
    warned = False


def _warn_once(msg: str) -> None:
    if not _State.warned:
        _State.warned = True
        warnings.warn(f"beexbench.kernels: {msg}", RuntimeWarning, stacklevel=3)


def _self_check(ops: Any) -> str | None:
    """Compare the chosen native backend against the fallback on odd shapes."""
    g = torch.Generator().manual_seed(1234)
    for m, n, k in ((5, 7, 130), (3, 9, 64), (2, 6, 1), (9, 5, 513)):
        x = torch.randn(m, k, generator=g)
        w = torch.randn(n, k, generator=g)
        x[0, 0] = 0.0
        wp = _fallback.pack_rows(w)
        if not torch.equal(ops.pack_rows(w), wp):
            return f"pack_rows mismatch at K={k}"
        if not torch.equal(ops.binary_matmul(_fallback.pack_rows(x), wp, k),
                           _fallback.binary_matmul(_fallback.pack_rows(x), wp, k)):
            return f"binary_matmul mismatch at {m}x{k}x{n}"
        alpha = torch.rand(n, generator=g)
        bias = torch.randn(n, generator=g)
        if not torch.allclose(ops.binary_linear(x, wp, alpha, bias, k),
                              _fallback.binary_linear(x, wp, alpha, bias, k), atol=1e-4, rtol=1e-5):
            return f"binary_linear mismatch at {m}x{k}x{n}"
        qb, kb = x.view(1, m, k).expand(2, m, k), w.view(1, n, k).expand(2, n, k)
        if not torch.equal(ops.binary_qk_batched(qb, kb), _fallback.binary_qk_batched(qb, kb)):
            return f"binary_qk_batched mismatch at 2x{m}x{k}x{n}"
    return None


def _init() -> None:
    if _State.initialised:
        return
    with _State.lock:
        if _State.initialised:
            return
        want = settings.kernels_choice()  # a value it does not know: SettingError (every call)
        if want == "fallback":
            _State.reason = f"forced by {ENV_VAR}={os.environ.get(ENV_VAR, '').strip()}"
            _State.use_fallback = True
            _State.initialised = True
            return
        info = load_native(verbose=settings.kernels_verbose())
        _State.build = info
        if not info.loaded:
            _State.reason = f"native kernels unavailable ({info.error})"
            _State.use_fallback = True
            _State.initialised = True
            _warn_once(f"using the slow pure-PyTorch fallback: {_State.reason}")
            return
        ops = getattr(torch.ops, OPS_NAMESPACE)
        _State.ops = ops
        if want != "auto":
            avail = str(ops.available_backends()).split(",")
            if want not in avail:
                _State.initialised = True
                _State.use_fallback = True
                _State.reason = f"{ENV_VAR}={want} is not supported by this CPU"
                raise BeexError(
                    f"{ENV_VAR}={want}: this CPU supports only {', '.join(avail)}")
            ops.set_backend(want)
        # Guard against a miscompiled / mis-dispatched SIMD path: verify, and
        # step down to the next backend if the answers differ.
        while True:
            bad = _self_check(ops)
            if bad is None:
                break
            name = str(ops.backend())
            avail = str(ops.available_backends()).split(",")
            nxt = avail.index(name) + 1 if name in avail else len(avail)
            if nxt >= len(avail):
                _State.reason = f"native self-check failed on {name}: {bad}"
                _State.use_fallback = True
                _State.initialised = True
                _warn_once(f"using the slow pure-PyTorch fallback: {_State.reason}")
                return
            _warn_once(f"backend {name} failed its self-check ({bad}); using {avail[nxt]}")
            ops.set_backend(avail[nxt])
        _State.use_fallback = False
        _State.native_ready = True
        _State.reason = None
        _State.initialised = True


def backend() -> str:
    """The implementation that runs: avx512-vpopcnt | avx2 | avx512-vnni | portable | torch-fallback."""
    _init()
    if _State.use_fallback:
        return FALLBACK
    return str(_State.ops.backend())


def fallback_reason() -> str | None:
    """Why the pure-PyTorch fallback is used (None when native kernels run)."""
    _init()
    return _State.reason if _State.use_fallback else None


def available_backends() -> list[str]:
    """Backends usable in this process, best first (the fallback is always last)."""
    _init()
    names: list[str] = []
    if _State.ops is not None:
        names = str(_State.ops.available_backends()).split(",")
    return names + [FALLBACK]


def set_backend(name: str) -> str:
    """Switch implementation: "auto", "torch-fallback"/"fallback", or a native name.

    Returns the backend now in use.  Raises BeexError if it is not available.
    """
    _init()
    name = name.strip().lower()
    if name in ("fallback", FALLBACK):
        if _State.reason is None:
            _State.reason = "selected with set_backend()"
        _State.use_fallback = True
        _State.native_ready = False
        return FALLBACK
    if _State.ops is None:
        if name == "auto":
            return FALLBACK
        raise BeexError(f"kernel backend {name!r} unavailable: {_State.reason}")
    avail = str(_State.ops.available_backends()).split(",")
    if name != "auto" and name not in avail:
        raise BeexError(f"kernel backend {name!r} unavailable on this CPU "
                        f"(available: {', '.join(avail + [FALLBACK])})")
    _State.ops.set_backend(name)
    _State.use_fallback = False
    _State.native_ready = True
    _State.reason = None
    return backend()


def build_info() -> dict:
    """How the native kernels were obtained: compiled or cached, seconds, paths."""
    _init()
    b = _State.build
    d = {"backend": backend(), "fallback_reason": fallback_reason()}
    if b is not None:
        d.update(loaded=b.loaded, compiled=b.compiled, seconds=round(b.seconds, 3),
                 library=b.library, cache_dir=b.cache_dir, cpu=b.cpu, error=b.error)
    return d


def _use_native() -> bool:
    _init()
    return not _State.use_fallback
