"""The packed-bit BEExformer inference engine and its deployable format (facade).

A small inference-only module tree, with the same module names as the trained
:class:`~beexbench.models.encoder.EarlyExitEncoder` (so counters and reports line up):

* ``tok`` / ``pos`` / ``emb_norm``: fp32 embeddings and LayerNorm;
* ``blocks.i.attn.{q,k,v,o}``, ``blocks.i.ffn.w*``: :class:`PackedLinear` - the signs of
  the weight, 64 to a word, a per-row fp32 ``alpha``, the fp32 bias, and the learnable
  input shift folded into the packing threshold: bit = (x + shift >= 0), the add computed
  exactly as the float model does it, so the bits are the float model's signs;
* ``blocks.i.attn.qk``: :class:`PackedQK` - sign(q) . sign(k)^T for every head of every
  sample in one packed-bit kernel call; the per-token scales mean|q|, mean|k| and the
  1/sqrt(d_head), softmax and A.V stay fp32 (``blocks.i.attn.av``);
* ``heads.i``: fp32 exit heads (masked mean pool, LayerNorm, Linear); the exit rule is the
  trained model's (:mod:`beexbench.models.exits`).

Nothing here imports the training code (no autograd Functions, no QuantLinear): a packed
model is built from a trained network's ``state_dict`` (:func:`pack_encoder`) or read from
its files (:func:`read_packed`).  Every op mirrors the float model op for op, so in eval
mode the engine returns the float model's logits (the +-1 products are exact integers in
both) and therefore its predictions and exit blocks.

Importing the engine defines no torch.library op and edits no table: the
``beexbench_engine`` ops the operation counter traces are defined on first use
(:mod:`._traced_ops`), and their op handles are contributed by ``PackedLinear`` /
``PackedQK`` to each analysis of a model that holds them.

Where the parts live: layers :mod:`.layers`, the encoder :mod:`.encoder`, the fused C++
path :mod:`._fused` (built by :mod:`._native`), packing :mod:`.pack`, files :mod:`.files`.
"""
from __future__ import annotations

from .encoder import REQUIRED, PackedEncoder, check_config
from .files import BIT_LAYOUT, PACKED_FILE, PACKED_FORMAT, PACKED_VERSION, read_packed, write_packed
from .layers import (
    FFN_LAYERS,
    FloatMatMul,
    PackedAttention,
    PackedBlock,
    PackedGeluFFN,
    PackedLinear,
    PackedQK,
    PackedSLFN,
)
from .pack import pack_encoder

__all__ = [
    "BIT_LAYOUT", "FFN_LAYERS", "PACKED_FILE", "PACKED_FORMAT", "PACKED_VERSION", "REQUIRED", "FloatMatMul",
    "PackedAttention", "PackedBlock", "PackedEncoder", "PackedGeluFFN", "PackedLinear", "PackedQK", "PackedSLFN",
    "check_config", "pack_encoder", "read_packed", "write_packed",
]
