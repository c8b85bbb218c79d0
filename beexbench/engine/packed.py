"""The packed-bit BEExformer inference engine and its deployable format (facade).

A small inference-only module tree, with the same module names as the trained
:class:`~beexbench.models.encoder.EarlyExitEncoder` (so counters and reports line up):

* ``tok``: :class:`PackedEmbedding` - the token rows as stored (int8 or int4 with an fp32
  scale per row, or 1-bit rows for a model trained with A5, exactly its table; fp32 on
  request); ``pos`` / ``emb_norm``: fp32 position embedding (with a BERT token-type table,
  its type-0 row folded in at packing) and LayerNorm (the encoder's ``layer_norm_eps``);
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
mode the engine returns the logits of the float model whose token table is the decoded rows
(the +-1 products are exact integers in both) and therefore its predictions and exit blocks:
the trained float model's own with 1-bit rows of an A5 model (or fp32 rows); int8 / int4 rows
round the table, and that deployment's accuracy is measured as its own.

Importing the engine defines no torch.library op and edits no table: the
``beexbench_engine`` ops the operation counter traces are defined on first use
(:mod:`._traced_ops`), and their op handles are contributed by ``PackedLinear`` /
``PackedQK`` to each analysis of a model that holds them.

Where the parts live: layers :mod:`.layers`, the encoder :mod:`.encoder`, the fused C++
path :mod:`._fused` (built by :mod:`._native`), packing :mod:`.pack`, files :mod:`.files`.
"""
from __future__ import annotations

from .embedding import FORMATS as EMBEDDING_FORMATS
from .embedding import PackedEmbedding
from .encoder import REQUIRED, PackedEncoder, check_config, embedding_bits_for
from .files import BIT_LAYOUT, EMBEDDING_LAYOUT, PACKED_FILE, PACKED_FORMAT, PACKED_VERSION, read_packed, write_packed
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
from .pack import pack_encoder, token_rows

__all__ = [
    "BIT_LAYOUT", "EMBEDDING_FORMATS", "EMBEDDING_LAYOUT", "FFN_LAYERS", "PACKED_FILE", "PACKED_FORMAT",
    "PACKED_VERSION", "REQUIRED", "FloatMatMul", "PackedAttention", "PackedBlock", "PackedEmbedding", "PackedEncoder",
    "PackedGeluFFN", "PackedLinear", "PackedQK", "PackedSLFN", "check_config", "embedding_bits_for", "pack_encoder",
    "read_packed", "token_rows", "write_packed",
]
