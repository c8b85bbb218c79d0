"""The packed engine's token embedding: rows stored as the deployment reads them.

:class:`PackedEmbedding` holds ``codes`` and a per-row ``scale`` in one of four formats
(``bits``); a row's value is ``code * scale[row]``:

====== ========================================= ==========================================
bits   codes                                     value of element j of row r
====== ========================================= ==========================================
32     float32 [V, d] (scale empty)              codes[r, j]
8      int8 [V, d], symmetric per row            codes[r, j] * scale[r]
4      uint8 [V, ceil(d/2)]: element j in byte   (nibble - 8) * scale[r], nibble in 1..15
       j // 2, low nibble for even j
1      int64 [V, ceil(d/64)] (uint64 words):     (+1 if bit else -1) * scale[r]
       element j is bit j % 64 of word j // 64
====== ========================================= ==========================================

The 1-bit format is exactly A5's ``alpha_row * sign(E)`` (sign(0) = +1, alpha = mean |E|
per row): a model trained with ``binary_embedding`` loses nothing. The 8- and 4-bit
formats round a float table (scale = max |row| / 127 or / 7): the deployment then differs
from the trained model, and that accuracy cost is measured, not assumed.
"""
from __future__ import annotations

import torch
from torch import nn

from ..errors import BeexError

FORMATS = (32, 8, 4, 1)
_QMAX = {8: 127, 4: 7}


def encode_rows(table: torch.Tensor, bits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(codes, scale)`` of a float [V, d] table in format ``bits``."""
    table = table.detach().float().contiguous()
    v, d = table.shape
    if bits == 32:
        return table.clone(), torch.empty(0)
    if bits == 1:
        from .. import kernels

        return kernels.pack_rows(table).view(torch.int64).clone(), table.abs().mean(dim=-1)
    if bits not in _QMAX:
        raise BeexError(f"embedding format {bits} bits is not one of {FORMATS}")
    qmax = _QMAX[bits]
    amax = table.abs().amax(dim=-1)
    scale = torch.where(amax > 0, amax / qmax, torch.ones_like(amax))
    q = torch.clamp(torch.round(table / scale[:, None]), -qmax, qmax).to(torch.int8)
    if bits == 8:
        return q, scale
    nib = (q.to(torch.int16) + 8).to(torch.uint8)  # 1..15
    if d % 2:
        nib = torch.cat([nib, torch.full((v, 1), 8, dtype=torch.uint8)], dim=1)
    return (nib[:, 0::2] | (nib[:, 1::2] << 4)).contiguous(), scale


def decode_rows(codes: torch.Tensor, scale: torch.Tensor, bits: int, dim: int) -> torch.Tensor:
    """The float [V', d] rows that ``codes``/``scale`` (any subset of rows) stand for."""
    if bits == 32:
        return codes
    if bits == 8:
        return codes.float() * scale[:, None]
    if bits == 4:
        lo = (codes & 0xF).to(torch.int16) - 8
        hi = (codes >> 4).to(torch.int16) - 8
        q = torch.stack([lo, hi], dim=-1).flatten(-2)[:, :dim]
        return q.float() * scale[:, None]
    if bits == 1:
        shifts = torch.arange(64, dtype=torch.int64)
        words = codes.view(torch.int64)
        b = ((words[:, :, None] >> shifts) & 1).flatten(-2)[:, :dim]
        return (b.float() * 2 - 1) * scale[:, None]
    raise BeexError(f"embedding format {bits} bits is not one of {FORMATS}")


class PackedEmbedding(nn.Module):
    """Token embedding lookup from stored codes (see the module docstring for the formats).
    Buffers ``codes`` and ``scale`` are what the deployable file stores."""

    def __init__(self, num_embeddings: int, dim: int, bits: int = 32) -> None:
        super().__init__()
        if bits not in FORMATS:
            raise BeexError(f"embedding format {bits} bits is not one of {FORMATS}")
        self.num_embeddings, self.dim, self.bits = int(num_embeddings), int(dim), int(bits)
        codes, scale = encode_rows(torch.zeros(num_embeddings, dim), bits)
        self.register_buffer("codes", codes)
        self.register_buffer("scale", scale)

    @classmethod
    def from_table(cls, table: torch.Tensor, bits: int) -> "PackedEmbedding":
        out = cls(table.shape[0], table.shape[1], bits)
        out.codes, out.scale = encode_rows(table, bits)
        return out

    def table(self) -> torch.Tensor:
        """The whole float table this embedding stands for."""
        return decode_rows(self.codes, self.scale, self.bits, self.dim)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        flat = ids.reshape(-1)
        rows = decode_rows(self.codes[flat], self.scale[flat] if self.bits != 32 else self.scale, self.bits, self.dim)
        return rows.view(*ids.shape, self.dim)

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.dim}, bits={self.bits}"
