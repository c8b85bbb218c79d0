"""Input validation of the packed-bit kernels: :class:`KernelInputError` and the checks
every public kernel runs before it touches data (shape, dtype, device, empty batch)."""

from __future__ import annotations

from typing import Any

import torch

from beexbench.errors import BeexError


class KernelInputError(BeexError, ValueError):
    """Bad input to a binary kernel (shape, dtype, empty batch, device)."""


def words_for(k: int) -> int:
    """Number of uint64 words holding ``k`` packed signs."""
    return (int(k) + 63) // 64


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
