"""The packed engine's token embedding: rows stored as the deployment reads them.

:class:`PackedEmbedding` holds ``codes`` and a per-row ``scale`` in one of four formats
(``bits``); a row's value is ``code * scale[row]``:

====== ========================================= ==========================================
bits   codes                                     value of element j of row r
====== ========================================= ==========================================
32     float32 [V, d] (scale empty)              codes[r, j]
8      int8 [V, d], symmetric per row, fp16      codes[r, j] * scale[r]
       scale per row
4      uint8 [V, ceil(d/2)]: element j in byte   (nibble - 8) * scale[r], nibble in 1..15
       j // 2, low nibble for even j; fp16 scale
       j // 2, low nibble for even j
1      int64 [V, ceil(d/64)] (uint64 words):     (+1 if bit else -1) * scale[r]
       element j is bit j % 64 of word j // 64;
       fp32 scale
====== ========================================= ==========================================

The 1-bit format is exactly A5's ``alpha_row * sign(E)`` (sign(0) = +1, alpha = mean |E|
per row): a model trained with ``binary_embedding`` loses nothing. The 8- and 4-bit
formats round a float table (scale = max |row| / 127 or / 7, rounded to fp16 before the codes
are chosen, so the stored fp16 scale is exact; held as fp32 in memory, which represents it
exactly): the deployment then differs from the trained model, and that accuracy cost is
measured, not assumed. The 1-bit scale stays fp32: it is the trained alpha.

A deployment picks 1-bit rows for a model trained with A5 and int8 rows otherwise
(:func:`default_bits`); int4 (and fp32) rows are a choice of the deployment.
"""
from __future__ import annotations

import torch
from torch import nn

import sys

from ..errors import BeexError

FORMATS = (32, 8, 4, 1)
EMBEDDING_NAMES = {32: "fp32 rows", 8: "int8 rows with an fp16 scale per row",
                   4: "int4 rows (two per byte) with an fp16 scale per row",
                   1: "1-bit rows (64 per word) with an fp32 scale per row"}
SCALE_DTYPE = {8: torch.float16, 4: torch.float16, 1: torch.float32}  # the stored per-row scale
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
    half = (amax / qmax).to(torch.float16)  # the stored scale: chosen first, so the codes fit it
    scale = torch.where((half > 0) & torch.isfinite(half), half, torch.ones_like(half)).float()
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


def default_bits(binary_embedding: bool) -> int:
    """The format a deployment uses unless told otherwise: 1-bit rows for a model trained with
    A5 (lossless there), int8 rows for a float table."""
    return 1 if binary_embedding else 8


def binary_table(table: torch.Tensor) -> torch.Tensor:
    """A5's deployed table ``alpha_row * sign(E)`` (sign(0) = +1, alpha = mean |E| per row),
    computed with the same ops as :class:`~beexbench.models.encoder.BinaryEmbedding` in eval
    mode (``hard_sign(E) * row_scale(E)``)."""
    table = table.detach().float()
    return torch.where(table >= 0, 1.0, -1.0).to(table.dtype) * table.abs().mean(dim=-1).unsqueeze(-1)


# lookup tables that expand a gathered byte into its elements (F.embedding: a lookup, no
# arithmetic): 4-bit, the two signed nibbles (low first); 1-bit, the 8 bits as +-1 (LSB first;
# an int64 word viewed as bytes is little-endian, as on every platform the kernels build for)
_BYTES = torch.arange(256)
_LUT = {
    4: torch.stack([(_BYTES & 0xF) - 8, (_BYTES >> 4) - 8], dim=1).float(),
    1: (((_BYTES[:, None] >> torch.arange(8)) & 1) * 2 - 1).float(),
}


class PackedEmbedding(nn.Embedding):
    """Token embedding lookup from stored codes (see the module docstring for the formats).

    ``codes`` and ``scale`` are what the deployable file stores. They are plain tensor
    attributes, not buffers (as :class:`~.layers.PackedLinear`'s ``alpha``): the size
    profiler counts the table by its declared logical ``weight`` ([V, d] at ``bits``, the
    per-row scale beside it), not as extra buffers. It is an ``nn.Embedding`` (without the
    float parameter) so that tools that recognise embedding tables by type (the size
    profiler's ``embeddings`` component) see it as one; ``weight`` is the float table the
    codes stand for, decoded on each read (read-only).

    ``forward`` is lookups (``F.embedding`` of the codes, of the scales and, for 4 and 1 bits,
    of a byte -> elements table) and one multiply per element by the row's scale (none for
    32 bits): the values of :func:`decode_rows`, bit for bit."""

    def __init__(self, num_embeddings: int, dim: int, bits: int = 32) -> None:
        nn.Module.__init__(self)  # not nn.Embedding's: no float weight parameter
        if bits not in FORMATS:
            raise BeexError(f"embedding format {bits} bits is not one of {FORMATS}")
        self.num_embeddings, self.dim, self.bits = int(num_embeddings), int(dim), int(bits)
        self.embedding_dim = self.dim
        self.padding_idx, self.max_norm, self.norm_type = None, None, 2.0
        self.scale_grad_by_freq, self.sparse = False, False
        self.codes, self.scale = encode_rows(torch.zeros(num_embeddings, dim), bits)

    @classmethod
    def from_table(cls, table: torch.Tensor, bits: int) -> "PackedEmbedding":
        out = cls(table.shape[0], table.shape[1], bits)
        out.codes, out.scale = encode_rows(table, bits)
        return out

    @property
    def weight_bits(self) -> int:
        """The stored bits per element of the table (declared like ``QuantLinear.weight_bits``)."""
        return self.bits

    @property
    def weight(self) -> torch.Tensor:  # type: ignore[override]
        """The float [V, d] table the codes stand for (decoded on each read)."""
        return self.table()

    def table(self) -> torch.Tensor:
        """The whole float table this embedding stands for."""
        return decode_rows(self.codes, self.scale, self.bits, self.dim)

    def load(self, codes: torch.Tensor, scale: torch.Tensor) -> None:
        """Take stored codes and scales, checked against this format's dtypes and shapes."""
        want = self.stored()
        for what, got in (("codes", codes), ("scale", scale)):
            ref = want.get(what, self.scale)
            if got.dtype != ref.dtype or got.shape != ref.shape:
                raise BeexError(f"token embedding {what}: {got.dtype} {tuple(got.shape)}, expected {ref.dtype} "
                                f"{tuple(ref.shape)} for {self.bits}-bit rows")
        self.codes, self.scale = codes.clone(), scale.float()  # fp16 scales are exact in fp32

    def stored(self) -> dict[str, torch.Tensor]:
        """What the deployable file stores, by name within this module (no empty scale)."""
        if self.bits == 32:
            return {"codes": self.codes}
        return {"codes": self.codes, "scale": self.scale.to(SCALE_DTYPE[self.bits])}

    def _apply(self, fn, *args, **kwargs):
        out = super()._apply(fn, *args, **kwargs)
        self.codes, self.scale = fn(self.codes), fn(self.scale)
        return out

    @property
    def codes(self) -> torch.Tensor:
        return self._codes

    @codes.setter
    def codes(self, value: torch.Tensor) -> None:
        self._codes = value
        # 1-bit rows: the words' bytes (least significant first on a little-endian host), viewed
        # once here so that the lookup in ``forward`` is one gather (a traced dtype view is not)
        little = self.bits == 1 and sys.byteorder == "little"
        self._bytes = value.view(torch.uint8) if little else None

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        f = nn.functional.embedding
        if self.bits == 32:
            return f(ids, self.codes)
        scale = f(ids, self.scale.unsqueeze(-1))  # [..., 1]
        if self.bits == 8:
            q = f(ids, self.codes).float()
        elif self.bits == 1 and self._bytes is None:  # a big-endian host: unpack the words
            rows = decode_rows(self.codes[ids.reshape(-1)], torch.ones(ids.numel()), 1, self.dim)
            q = rows.view(*ids.shape, self.dim)
        else:
            raw = f(ids, self._bytes if self.bits == 1 else self.codes)
            q = f(raw.long(), _LUT[self.bits].to(raw.device)).flatten(-2)[..., : self.dim]
        return q * scale

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.dim}, bits={self.bits}"
