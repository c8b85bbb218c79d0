"""The packed-bit kernels: sign packing and the binary products (matmul, linear, Q.K^T),
on the backend :mod:`._backend` chose, every input checked by :mod:`._checks`."""

from __future__ import annotations

import torch

from . import _fallback
from ._backend import _State, _use_native
from ._checks import KernelInputError, _check_float, _check_k, _check_packed, _tensor


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


def binary_layout(w_packed: torch.Tensor, K: int) -> torch.Tensor | None:
    """``w_packed`` as the kernels' backend reads it (avx512-vpopcnt: its column panel of all
    the rows), built once and passed to :func:`binary_linear` as ``layout`` so that a call skips
    re-laying the weights out; None where the backend reads the packed rows as they are (or the
    kernels run the PyTorch fallback). Derived data only: the weights stay 1-bit, and a layout
    must be rebuilt when they change (:class:`~.packed_linear.PackedBinaryLinear` does)."""
    K = _check_k(K)
    w = _check_packed(w_packed, "w_packed", K)
    if not _use_native():
        return None
    laid = _State.ops.binary_layout(w, K)
    return laid if laid.numel() else None


def binary_linear(
    x: torch.Tensor,
    w_packed: torch.Tensor,
    alpha: torch.Tensor,
    bias: torch.Tensor | None = None,
    K: int | None = None,
    layout: torch.Tensor | None = None,
) -> torch.Tensor:
    """``(sign(x) @ sign(W).T) * alpha + bias`` with W given packed.

    ``x`` is [..., K] float (any float dtype; computed in fp32, returned in
    ``x.dtype``), ``w_packed`` uint64 [N, ceil(K/64)] from ``pack_rows``,
    ``alpha`` [N], ``bias`` [N] or None.  Activations are packed inside the
    kernel call. ``layout``: :func:`binary_layout` of these same weights (same results,
    no per-call re-layout), or None.
    """
    if _State.native_ready:
        # Fast path: the C++ op checks everything itself; on any complaint we
        # fall through to the Python checks below for a clear KernelInputError.
        try:
            if x.dim() == 2:
                return _State.ops.binary_linear(x, w_packed, alpha, bias,
                                                x.shape[1] if K is None else K, layout)
        except (RuntimeError, TypeError, AttributeError, IndexError):
            pass
    return _binary_linear_checked(x, w_packed, alpha, bias, K, layout)


def _binary_linear_checked(x, w_packed, alpha, bias, K, layout=None) -> torch.Tensor:
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
    if layout is not None:
        words = w.shape[1]
        want = ((n + 15) // 16, 2 * words, 16)
        if not isinstance(layout, torch.Tensor) or layout.dtype != torch.int32 or tuple(layout.shape) != want:
            got = tuple(layout.shape) if isinstance(layout, torch.Tensor) else type(layout).__name__
            raise KernelInputError(f"layout must be binary_layout(w_packed, K) of these weights: int32 {want}, got {got}")
    if _use_native():
        y = _State.ops.binary_linear(x2, w, alpha, bias, K, layout)
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
