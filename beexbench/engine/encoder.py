"""The packed-bit BEExformer: :class:`PackedEncoder`, its configuration check and its
tensors (what :mod:`.files` stores and :mod:`.pack` fills from a trained network).

Module names match the trained :class:`~beexbench.models.encoder.EarlyExitEncoder`
(``tok``, ``pos``, ``emb_norm``, ``blocks.i.*``, ``heads.i``), so counters and reports
line up; the exit heads are the trained model's fp32 :class:`ExitHead`. The token embedding
``tok`` is a :class:`~.embedding.PackedEmbedding` (``embedding_bits``: 1-bit rows for a model
trained with A5, int8 rows by default otherwise, int4 or fp32 on request); the position
embedding stays fp32 (max_len x d_model floats: 16 KB at 64 x 64); with BERT's token-type table
(``type_vocab_size``) it holds the position rows plus the type-0 row, added once at packing (every
token is type 0), and ``layer_norm_eps`` sets the embedding and block LayerNorms' eps.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..errors import BeexError
from ..models import canonical
from ..models.encoder import ExitHead, all_exits, early_exit_infer  # the fp32 head is shared as is
from ..models.exits import ExitDecision, ExitRule
from . import _fused
from .embedding import FORMATS, PackedEmbedding, default_bits
from .layers import FFN_LAYERS, PackedBlock, PackedLinear

# the encoder options the engine implements (BEExformer's W1A1 configuration)
# (binary_embedding, A5, either way: 1-bit token rows with it, int8 / int4 / fp32 rows without;
# BERT's type_vocab_size and layer_norm_eps, any valid value: see fold_token_type and ln_eps)
REQUIRED = {"weight_bits": 1, "act_bits": 1, "binary_qk": True, "attention_probs": "softmax",
            "learnable_act_scale": False}
DEFAULT_EPS = 1e-5  # torch's LayerNorm eps: the encoder's with layer_norm_eps None, and the exit heads'


class PackedExitHead(ExitHead):
    """The trained model's :class:`ExitHead` (same tensors), computed in the engine's order
    (:mod:`beexbench.models.canonical`: pooling, LayerNorm and output dot products)."""

    def forward(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if canonical.counting():  # an operation counter: the float head's ops
            return super().forward(h, mask)
        normed = canonical.layer_norm(canonical.masked_mean(h, mask), self.norm.weight, self.norm.bias, self.norm.eps)
        return canonical.linear(normed, self.out.weight, self.out.bias)


def ln_eps(enc: dict[str, Any]) -> float:
    """The eps of the encoder's LayerNorms (embedding and blocks; the exit heads keep
    :data:`DEFAULT_EPS`, as in :class:`~beexbench.models.encoder.ExitHead`)."""
    eps = enc.get("layer_norm_eps")
    return DEFAULT_EPS if eps is None else float(eps)


def folds_token_type(enc: dict[str, Any]) -> bool:
    """Whether the model has BERT's token-type table: every token is type 0, so its row 0 is
    added into the position table when packing (:func:`~.pack.fold_token_type`) and inference
    has no third lookup."""
    return enc.get("type_vocab_size") is not None


def check_config(enc: dict[str, Any]) -> None:
    bad = {k: enc.get(k) for k, v in REQUIRED.items() if enc.get(k) != v}
    if enc.get("ffn") not in FFN_LAYERS:
        bad["ffn"] = enc.get("ffn")
    typ, eps = enc.get("type_vocab_size"), enc.get("layer_norm_eps")
    if typ is not None and (not isinstance(typ, int) or isinstance(typ, bool) or typ < 1):
        bad["type_vocab_size"] = typ
    if eps is not None and (isinstance(eps, bool) or not isinstance(eps, (int, float)) or not eps > 0):
        bad["layer_norm_eps"] = eps
    if bad:
        raise BeexError(
            f"the packed engine runs BEExformer's W1A1 configuration ({REQUIRED}, ffn in {sorted(FFN_LAYERS)}); "
            f"this model has {bad}: measure it with its own adapter")


def embedding_bits_for(enc: dict[str, Any], bits: int | None = None) -> int:
    """The token rows' format for a model with encoder settings ``enc``: ``bits``, or by
    default 1 with A5 (``binary_embedding``), else 8. 1-bit rows are refused for a model
    trained without A5 (they would be a lossy binarization it never saw)."""
    a5 = bool(enc.get("binary_embedding"))
    bits = default_bits(a5) if bits is None else bits
    if bits not in FORMATS:
        raise BeexError(f"embedding_bits is {bits!r}: use one of {FORMATS}")
    if bits == 1 and not a5:
        raise BeexError("1-bit token embedding rows are the trained table only for a model trained with "
                        "binary_embedding (A5): deploy this one with 8- or 4-bit rows")
    return bits


class PackedEncoder(nn.Module):
    """Packed-bit BEExformer: ``forward`` gives every exit's logits, ``infer`` early-exits."""

    def __init__(self, enc: dict[str, Any], *, vocab_size: int, max_len: int, num_labels: int,
                 embedding_bits: int | None = None) -> None:
        super().__init__()
        check_config(enc)
        self.enc = dict(enc)
        self.embedding_bits = embedding_bits_for(enc, embedding_bits)
        d, shift = int(enc["d_model"]), bool(enc["learnable_shift"])
        if d % int(enc["n_heads"]):
            raise BeexError(f"d_model={d} must be divisible by n_heads={enc['n_heads']}")
        self.max_len, self.num_labels, self.n_blocks = int(max_len), int(num_labels), int(enc["n_blocks"])
        self.eps = ln_eps(enc)
        # BERT's token-type row 0 is in ``pos`` (added at packing): recorded here and in the file's header
        self.token_type_folded = folds_token_type(enc)
        self.tok = PackedEmbedding(vocab_size, d, self.embedding_bits)
        self.pos = nn.Embedding(max_len, d)
        self.emb_norm = canonical.LayerNorm(d, eps=self.eps)
        self.blocks = nn.ModuleList(
            PackedBlock(d, int(enc["n_heads"]), int(enc["d_ff"]), enc["ffn"], shift, self.eps)
            for _ in range(self.n_blocks))
        n_heads = self.n_blocks if enc["exit_heads"] else 1
        self.heads = nn.ModuleList(PackedExitHead(d, num_labels) for _ in range(n_heads))
        self._fast = None  # the fused paths' tensors (_fused.whole_tensors), built on first use

    # -- layout (same as EarlyExitEncoder: the counters group by blocks / head_for) ---
    @property
    def n_exits(self) -> int:
        return len(self.heads)

    @property
    def exit_blocks(self) -> list[int]:
        return list(range(1, self.n_blocks + 1)) if self.enc["exit_heads"] else [self.n_blocks]

    def head_for(self, block: int) -> nn.Module | None:
        if self.enc["exit_heads"]:
            return self.heads[block - 1]
        return self.heads[0] if block == self.n_blocks else None

    def packed_linears(self) -> dict[str, PackedLinear]:
        return {n: m for n, m in self.named_modules() if isinstance(m, PackedLinear)}

    # -- inference ---------------------------------------------------------------------
    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        # tok + pos: with a token-type table, pos already holds pos + type row 0 (the float
        # model's own add, done once at packing), so this is the float model's tok + (pos + typ0)
        if ids.shape[1] > self.max_len:
            raise ValueError(f"sequence length {ids.shape[1]} exceeds the model's max_len {self.max_len}")
        pos = torch.arange(ids.shape[1], device=ids.device)
        return self.emb_norm(self.tok(ids) + self.pos(pos))

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> list[torch.Tensor]:
        """Logits of every exit, [n_exits] x [B, C] (all blocks run)."""
        return all_exits(self, ids, mask)

    def infer(self, ids: torch.Tensor, mask: torch.Tensor, rule: ExitRule) -> ExitDecision:
        """Early-exit inference; rows that exit leave the batch (as EarlyExitEncoder.infer).

        While the native kernels are active: the whole model in one C++ call (``_engine.cpp``
        ``infer``: token lookup, every block, the heads and the rule; no ATen op inside but,
        rarely, the GELU's: see ``gelu_ffn`` there) for the fractional-entropy,
        absolute-entropy and no-exit rules, else one C++ call per block and its head;
        without them, the module path. All three compute the engine's numerics
        (:mod:`beexbench.models.canonical`) bit for bit, on any host, instruction set and thread
        count (tests/test_engine_native.py)."""
        from . import _native

        ops = _native.ops() if ids.device.type == "cpu" else None
        if ops is None:
            return self.infer_modules(ids, mask, rule)
        with torch.no_grad():
            return self._infer_fused(ops, ids, mask, rule)

    def _infer_fused(self, ops, ids: torch.Tensor, mask: torch.Tensor, rule: ExitRule) -> ExitDecision:
        return _fused.infer_fused(self, ops, ids, mask, rule)

    def infer_modules(self, ids: torch.Tensor, mask: torch.Tensor, rule: ExitRule) -> ExitDecision:
        """Early exit through the module tree (any kernel backend)."""
        return early_exit_infer(self, ids, mask, rule)

    # -- tensors -------------------------------------------------------------------------
    def packed_tensors(self) -> dict[str, torch.Tensor]:
        """What ``packed.safetensors`` stores: the token embedding's codes and scales, and every
        packed layer's words, alpha, bias and shift."""
        out = {f"tok.{k}": v for k, v in self.tok.stored().items()}
        for name, lin in self.packed_linears().items():
            out[f"{name}.weight_packed"] = lin.weight_packed
            out[f"{name}.alpha"] = lin.alpha
            if lin.bias is not None:
                out[f"{name}.bias"] = lin.bias
            if lin.shift is not None:
                out[f"{name}.shift"] = lin.shift
        return out

    def fp32_tensors(self) -> dict[str, torch.Tensor]:
        packed = set(self.packed_linears())
        return {k: v for k, v in self.state_dict().items() if k.rpartition(".")[0] not in packed}

    def load_tensors(self, packed: dict[str, torch.Tensor], fp32: dict[str, torch.Tensor]) -> None:
        """Load exactly (strict: every tensor present, right dtype and shape)."""
        want = self.packed_tensors()
        missing = sorted(set(want) - set(packed))
        extra = sorted(set(packed) - set(want))
        if missing or extra:
            raise BeexError(f"packed tensors do not match the architecture (missing {missing[:3]}, unexpected {extra[:3]})")
        for key, t in want.items():
            src = packed[key]
            if src.dtype != t.dtype or src.shape != t.shape:
                raise BeexError(f"packed tensor {key}: {src.dtype} {tuple(src.shape)}, expected {t.dtype} {tuple(t.shape)}")
        state = {k: v for k, v in packed.items() if not k.endswith(".alpha") and not k.startswith("tok.")}
        try:
            self.load_state_dict({**fp32, **state}, strict=True)
        except RuntimeError as exc:
            raise BeexError(f"fp32 tensors do not match the architecture ({str(exc).splitlines()[0]})") from None
        self.tok.load(packed["tok.codes"], packed.get("tok.scale", self.tok.scale))
        for name, lin in self.packed_linears().items():
            lin.alpha = packed[f"{name}.alpha"].clone()
        self._fast = None
