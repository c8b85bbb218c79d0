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
``fallback_reason()``; a deployment that declares the native kernels as its fast path
(``beexformer-packed``) then fails its cell with that reason unless the user allowed the fallback
(:mod:`beexbench.results.implementation`). An unknown ``BEEXBENCH_KERNELS`` value is a
:class:`~beexbench.settings.SettingError`.

The kernels are inference-only (no autograd) and CPU-only.  NaN inputs map to
-1 (``NaN >= 0`` is false).

Where the parts live: the backend choice :mod:`._backend`, input checks :mod:`._checks`,
the kernels :mod:`.products`, the module :mod:`.packed_linear`, the reference
implementation :mod:`._fallback`, the native build :mod:`._build`.
"""
from __future__ import annotations

from . import _fallback  # noqa: F401  (kernels._fallback: the reference implementation)
from ._backend import (  # noqa: F401  (_State, _init: the backend state the engine reads)
    ENV_VAR,
    FALLBACK,
    NATIVE_BACKENDS,
    _init,
    _State,
    _use_native,
    available_backends,
    backend,
    build_info,
    fallback_reason,
    set_backend,
)
from ._checks import KernelInputError, words_for
from .packed_linear import PackedBinaryLinear
from .products import binary_linear, binary_matmul, binary_qk, binary_qk_batched, pack_rows

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
