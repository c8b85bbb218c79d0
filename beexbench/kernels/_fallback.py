"""Pure-PyTorch reference implementation of the packed-bit kernels.

Same bit layout and results as the C++ kernels (``binary_gemm.cpp``): element
``k`` of a row is bit ``k % 64`` of word ``k // 64``; a bit is 1 where
``x >= 0`` (so 0 and -0.0 map to +1, NaN maps to -1); padding bits are 0.

It is used when the extension cannot be built, or when forced with
``BEEXBENCH_KERNELS=fallback`` / ``kernels.set_backend("torch-fallback")``.
Correct, not fast: it unpacks bits to +-1 floats and calls a dense matmul.
Inputs are assumed validated by ``beexbench.kernels``.
"""

from __future__ import annotations

import torch

NAME = "torch-fallback"

_SHIFTS = torch.arange(64, dtype=torch.int64)
# Weight of bit j as int64; bit 63 is -2**63 so the int64 sum has exactly the
# two's-complement bit pattern of the uint64 word (no overflow possible).
_WEIGHTS = torch.tensor([1 << j for j in range(63)] + [-(1 << 63)], dtype=torch.int64)


def words_for(k: int) -> int:
    return (k + 63) // 64


def _sign_bits(x: torch.Tensor) -> torch.Tensor:
    """bool [N, K]: True where x >= 0 (sign maps 0 to +1)."""
    return x >= 0


def pack_rows(x: torch.Tensor) -> torch.Tensor:
    n, k = x.shape
    w = words_for(k)
    bits = _sign_bits(x.float())
    if w * 64 != k:
        bits = torch.nn.functional.pad(bits, (0, w * 64 - k), value=False)
    words = (bits.view(n, w, 64).to(torch.int64) * _WEIGHTS).sum(dim=-1)
    return words.view(torch.uint64)


def unpack_signs(packed: torch.Tensor, k: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint64 [N, W] -> +-1 tensor [N, K] of ``dtype``."""
    words = packed.view(torch.int64) if packed.dtype == torch.uint64 else packed
    n, w = words.shape
    bits = (words.unsqueeze(-1) >> _SHIFTS) & 1  # arithmetic shift, masked to one bit
    bits = bits.reshape(n, w * 64)[:, :k]
    return bits.to(dtype) * 2 - 1


def _dot_dtype(k: int) -> torch.dtype:
    # +-1 partial sums are integers <= K: exact in float32 while K <= 2**24.
    return torch.float32 if k <= (1 << 24) else torch.float64


def binary_matmul(a_packed: torch.Tensor, b_packed: torch.Tensor, k: int) -> torch.Tensor:
    dt = _dot_dtype(k)
    a = unpack_signs(a_packed, k, dt)
    b = unpack_signs(b_packed, k, dt)
    return (a @ b.T).round().to(torch.int32)


def binary_linear(
    x: torch.Tensor,
    w_packed: torch.Tensor,
    alpha: torch.Tensor,
    bias: torch.Tensor | None,
    k: int,
) -> torch.Tensor:
    dt = _dot_dtype(k)
    sx = torch.where(_sign_bits(x), 1.0, -1.0).to(dt)
    sw = unpack_signs(w_packed, k, dt)
    dots = (sx @ sw.T).to(torch.float32)
    out = dots * alpha.float()
    if bias is not None:
        out = out + bias.float()
    return out


def binary_qk_batched(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """float32 [G, M, N]: sign(q[g]) @ sign(k[g]).T (exact integers while K <= 2**24)."""
    dt = _dot_dtype(q.shape[-1])
    sq = torch.where(_sign_bits(q), 1.0, -1.0).to(dt)
    sk = torch.where(_sign_bits(k), 1.0, -1.0).to(dt)
    return torch.bmm(sq, sk.transpose(1, 2)).to(torch.float32)


def backend() -> str:
    return NAME
