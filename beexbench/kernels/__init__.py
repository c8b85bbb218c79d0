"""Packed-bit binary matrix products for BEExformer's binarized layers (CPU).

A binarized linear layer computes ``y = (sign(x) @ sign(W).T) * alpha + bias``
with ``sign(0) = +1`` and a per-output-row fp32 scale ``alpha``.  Signs are
packed 64 to a ``uint64`` word (bit = 1 where ``x >= 0``), and a dot product of
two packed rows is ``K - 2 * popcount(a XOR b)``.

API::

    pack_rows(x[N, K] float)                          -> uint64 [N, ceil(K/64)]
    binary_matmul(a_packed[M, W], b_packed[N, W], K)  -> int32 [M, N]
    binary_linear(x[..., K], w_packed[N, W], alpha[N], bias[N] | None, K=None)
                                                      -> [..., N] (dtype of x)
    binary_qk(q[M, K], k[N, K], q_scale[M]|None, k_scale[N]|None) -> float32 [M, N]
    binary_qk_batched(q[G, M, K], k[G, N, K])         -> float32 [G, M, N] (+-1 dots, exact)
    PackedBinaryLinear.from_float(weight[N, K], alpha[N], bias[N] | None)
    backend()          -> "avx512-vpopcnt" | "avx2" | "portable" | "torch-fallback"
    fallback_reason()  -> why the native kernels are not in use (or None)
    available_backends(), set_backend(name), build_info()

The C++ kernels (``binary_gemm.cpp``) are compiled on first use and cached
(see ``_build``).  ``BEEXBENCH_KERNELS`` picks the backend at first use:
``auto`` (default), ``fallback`` / ``torch-fallback``, ``portable``, ``avx2``
or ``avx512-vpopcnt``.  If the build fails the pure-PyTorch fallback is used
and the reason is reported once (a ``RuntimeWarning``) and kept in
``fallback_reason()``.

The kernels are inference-only (no autograd) and CPU-only.  NaN inputs map to
-1 (``NaN >= 0`` is false).
"""

from __future__ import annotations

import os
import threading
import warnings
from typing import Any

import torch
from torch import nn

from beexbench.errors import BeexError

from . import _fallback
from ._build import OPS_NAMESPACE, BuildInfo, load_native

__all__ = [
    "KernelInputError",
    "PackedBinaryLinear",
    "available_backends",
    "backend",
    "binary_linear",
    "binary_matmul",
    "binary_qk",
    "binary_qk_batched",
    "build_info",
    "fallback_reason",
    "pack_rows",
    "set_backend",
    "words_for",
]

FALLBACK = _fallback.NAME
NATIVE_BACKENDS = ("avx512-vpopcnt", "avx2", "portable")
ENV_VAR = "BEEXBENCH_KERNELS"


class KernelInputError(BeexError, ValueError):
    """Bad input to a binary kernel (shape, dtype, empty batch, device)."""


def words_for(k: int) -> int:
    """Number of uint64 words holding ``k`` packed signs."""
    return (int(k) + 63) // 64


# ---------------------------------------------------------------------------
# Backend state (lazy: nothing is compiled until first use)
# ---------------------------------------------------------------------------
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
        want = os.environ.get(ENV_VAR, "auto").strip().lower() or "auto"
        if want in ("fallback", FALLBACK, "torch"):
            _State.reason = f"forced by {ENV_VAR}={want}"
            _State.use_fallback = True
            _State.initialised = True
            return
        if want != "auto" and want not in NATIVE_BACKENDS:
            _State.initialised = True  # do not retry on every call
            _State.reason = f"unknown {ENV_VAR}={want!r}"
            raise BeexError(
                f"{ENV_VAR}={want!r} is not a kernel backend; use one of: auto, fallback, "
                + ", ".join(NATIVE_BACKENDS))
        info = load_native(verbose=bool(os.environ.get("BEEXBENCH_KERNELS_VERBOSE")))
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
    """The implementation that runs: avx512-vpopcnt | avx2 | portable | torch-fallback."""
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


# ---------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------
_PACKED_DTYPES = (torch.uint64, torch.int64)


def _tensor(t: Any, what: str) -> torch.Tensor:
    if not isinstance(t, torch.Tensor):
        raise KernelInputError(f"{what} must be a torch.Tensor, got {type(t).__name__}")
    if t.device.type != "cpu":
        raise KernelInputError(f"{what} is on {t.device}; the binary kernels run on the CPU only")
    return t


def _check_float(t: Any, what: str) -> torch.Tensor:
    t = _tensor(t, what)
    if not t.is_floating_point():
        raise KernelInputError(f"{what} must be a floating-point tensor, got {t.dtype}")
    return t


def _check_packed(t: Any, what: str, k: int) -> torch.Tensor:
    t = _tensor(t, what)
    if t.dtype not in _PACKED_DTYPES:
        raise KernelInputError(
            f"{what} must be packed uint64 words (from pack_rows), got {t.dtype}")
    if t.dim() != 2:
        raise KernelInputError(f"{what} must be 2-D [rows, words], got shape {tuple(t.shape)}")
    w = words_for(k)
    if t.shape[1] != w:
        raise KernelInputError(
            f"{what} has {t.shape[1]} words per row but K={k} needs ceil(K/64)={w}")
    if t.shape[0] == 0:
        raise KernelInputError(f"{what} has no rows")
    return t


def _check_k(k: Any) -> int:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise KernelInputError(f"K must be a positive int, got {k!r}")
    return k


def _use_native() -> bool:
    _init()
    return not _State.use_fallback


# ---------------------------------------------------------------------------
# Kernels
# ---------------------------------------------------------------------------
def pack_rows(x: torch.Tensor) -> torch.Tensor:
    """Pack signs of a 2-D float tensor [N, K] into uint64 [N, ceil(K/64)].

    Bit ``k % 64`` of word ``k // 64`` is 1 where ``x[:, k] >= 0``; padding
    bits of the last word are 0.
    """
    x = _check_float(x, "x")
    if x.dim() != 2:
        raise KernelInputError(f"pack_rows expects a 2-D [N, K] tensor, got shape {tuple(x.shape)}")
    if x.shape[1] == 0:
        raise KernelInputError("pack_rows: K (number of columns) is 0")
    if _use_native():
        return _State.ops.pack_rows(x)
    return _fallback.pack_rows(x)


def binary_matmul(a_packed: torch.Tensor, b_packed: torch.Tensor, K: int) -> torch.Tensor:
    """int32 [M, N] with ``out[i, j] = sum_k sign(a[i, k]) * sign(b[j, k])``."""
    K = _check_k(K)
    a = _tensor(a_packed, "a_packed")
    if a.dim() == 2 and a.shape[0] == 0:
        raise KernelInputError("binary_matmul: empty batch (a_packed has 0 rows)")
    a = _check_packed(a, "a_packed", K)
    b = _check_packed(b_packed, "b_packed", K)
    if _use_native():
        return _State.ops.binary_matmul(a, b, K)
    return _fallback.binary_matmul(a, b, K)


def binary_linear(
    x: torch.Tensor,
    w_packed: torch.Tensor,
    alpha: torch.Tensor,
    bias: torch.Tensor | None = None,
    K: int | None = None,
) -> torch.Tensor:
    """``(sign(x) @ sign(W).T) * alpha + bias`` with W given packed.

    ``x`` is [..., K] float (any float dtype; computed in fp32, returned in
    ``x.dtype``), ``w_packed`` uint64 [N, ceil(K/64)] from ``pack_rows``,
    ``alpha`` [N], ``bias`` [N] or None.  Activations are packed inside the
    kernel call.
    """
    if _State.native_ready:
        # Fast path: the C++ op checks everything itself; on any complaint we
        # fall through to the Python checks below for a clear KernelInputError.
        try:
            if x.dim() == 2:
                return _State.ops.binary_linear(x, w_packed, alpha, bias,
                                                x.shape[1] if K is None else K)
        except (RuntimeError, TypeError, AttributeError, IndexError):
            pass
    return _binary_linear_checked(x, w_packed, alpha, bias, K)


def _binary_linear_checked(x, w_packed, alpha, bias, K) -> torch.Tensor:
    x = _check_float(x, "x")
    if x.dim() < 1:
        raise KernelInputError("x must have at least one dimension [..., K]")
    k_x = x.shape[-1]
    if K is None:
        K = k_x
    K = _check_k(K)
    if k_x != K:
        raise KernelInputError(f"x has {k_x} features but K={K}")
    if x.numel() == 0:
        raise KernelInputError(f"binary_linear: empty batch (x has shape {tuple(x.shape)})")
    w = _check_packed(w_packed, "w_packed", K)
    n = w.shape[0]
    alpha = _check_float(alpha, "alpha")
    if alpha.shape != (n,):
        raise KernelInputError(f"alpha must have shape ({n},), got {tuple(alpha.shape)}")
    if bias is not None:
        bias = _check_float(bias, "bias")
        if bias.shape != (n,):
            raise KernelInputError(f"bias must have shape ({n},), got {tuple(bias.shape)}")
    lead = x.shape[:-1]
    x2 = x.reshape(-1, K)
    if _use_native():
        y = _State.ops.binary_linear(x2, w, alpha, bias, K)
    else:
        y = _fallback.binary_linear(x2, w, alpha, bias, K)
    if x.dtype != torch.float32:
        y = y.to(x.dtype)
    return y.reshape(*lead, n)


def binary_qk(
    q: torch.Tensor,
    k: torch.Tensor,
    q_scale: torch.Tensor | None = None,
    k_scale: torch.Tensor | None = None,
) -> torch.Tensor:
    """Binary attention scores ``(sign(q) @ sign(k).T) * q_scale[:, None] * k_scale[None, :]``.

    ``q`` [M, K], ``k`` [N, K] float; scales are per-row fp32 (None = 1).
    """
    q = _check_float(q, "q")
    k = _check_float(k, "k")
    if q.dim() != 2 or k.dim() != 2 or q.shape[1] != k.shape[1]:
        raise KernelInputError(
            f"binary_qk expects q [M, K] and k [N, K], got {tuple(q.shape)} and {tuple(k.shape)}")
    if q.shape[0] == 0:
        raise KernelInputError("binary_qk: empty batch (q has 0 rows)")
    if k.shape[0] == 0:
        raise KernelInputError("binary_qk: k has 0 rows")
    K = q.shape[1]
    n = k.shape[0]
    ks = torch.ones(n) if k_scale is None else _check_float(k_scale, "k_scale")
    if ks.shape != (n,):
        raise KernelInputError(f"k_scale must have shape ({n},), got {tuple(ks.shape)}")
    out = binary_linear(q.float(), pack_rows(k), ks, None, K)
    if q_scale is not None:
        q_scale = _check_float(q_scale, "q_scale")
        if q_scale.shape != (q.shape[0],):
            raise KernelInputError(
                f"q_scale must have shape ({q.shape[0]},), got {tuple(q_scale.shape)}")
        out = out * q_scale.float().unsqueeze(1)
    return out


def binary_qk_batched(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """``sign(q[g]) @ sign(k[g]).T`` for every group g (e.g. batch x heads), float32.

    ``q`` [G, M, K], ``k`` [G, N, K] float; the +-1 dot products are exact integers
    (stored as float32, exact while K <= 2**24).  All groups' rows are packed in one
    call, so attention runs one kernel call for every head of every sample.
    """
    if _State.native_ready:
        try:
            return _State.ops.binary_qk_batched(q, k)
        except (RuntimeError, TypeError, AttributeError, IndexError):
            pass
    q = _check_float(q, "q")
    k = _check_float(k, "k")
    if q.dim() != 3 or k.dim() != 3 or q.shape[0] != k.shape[0] or q.shape[2] != k.shape[2]:
        raise KernelInputError(
            f"binary_qk_batched expects q [G, M, K] and k [G, N, K], got {tuple(q.shape)} and {tuple(k.shape)}")
    if q.shape[2] == 0:
        raise KernelInputError("binary_qk_batched: K (number of columns) is 0")
    if q.numel() == 0 or k.numel() == 0:
        raise KernelInputError(f"binary_qk_batched: empty input {tuple(q.shape)} x {tuple(k.shape)}")
    if _use_native():
        return _State.ops.binary_qk_batched(q, k)
    return _fallback.binary_qk_batched(q.float(), k.float())


# ---------------------------------------------------------------------------
# Module
# ---------------------------------------------------------------------------
class PackedBinaryLinear(nn.Module):
    """Inference-only binarized linear layer with pre-packed sign weights.

    Buffers (all saved in ``state_dict``, safetensors-compatible):
    ``weight_packed`` uint64 [out, ceil(in/64)], ``alpha`` float32 [out],
    ``bias`` float32 [out] (only when built with a bias).
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True) -> None:
        super().__init__()
        if in_features < 1 or out_features < 1:
            raise KernelInputError(
                f"PackedBinaryLinear needs positive sizes, got in={in_features}, out={out_features}")
        self.in_features = int(in_features)
        self.out_features = int(out_features)
        self.register_buffer(
            "weight_packed",
            torch.zeros(out_features, words_for(in_features), dtype=torch.uint64))
        self.register_buffer("alpha", torch.ones(out_features, dtype=torch.float32))
        if bias:
            self.register_buffer("bias", torch.zeros(out_features, dtype=torch.float32))
        else:
            self.register_buffer("bias", None)

    @classmethod
    def from_float(
        cls,
        weight: torch.Tensor,
        alpha: torch.Tensor | None = None,
        bias: torch.Tensor | None = None,
    ) -> "PackedBinaryLinear":
        """Build from a real-valued weight [N, K] (only its signs are kept).

        ``alpha`` [N] defaults to the mean absolute value of each weight row.
        """
        weight = _check_float(weight, "weight").detach()
        if weight.dim() != 2 or weight.numel() == 0:
            raise KernelInputError(f"weight must be a non-empty 2-D [N, K] tensor, got {tuple(weight.shape)}")
        n, k = weight.shape
        if alpha is None:
            alpha = weight.abs().mean(dim=1)
        alpha = _check_float(alpha, "alpha").detach()
        if alpha.shape != (n,):
            raise KernelInputError(f"alpha must have shape ({n},), got {tuple(alpha.shape)}")
        if bias is not None:
            bias = _check_float(bias, "bias").detach()
            if bias.shape != (n,):
                raise KernelInputError(f"bias must have shape ({n},), got {tuple(bias.shape)}")
        mod = cls(k, n, bias=bias is not None)
        mod.weight_packed.copy_(pack_rows(weight.float()))
        mod.alpha.copy_(alpha.float())
        if bias is not None:
            mod.bias.copy_(bias.float())
        return mod

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return binary_linear(x, self.weight_packed, self.alpha, self.bias, self.in_features)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}")
