"""The shared encoder: embeddings -> C post-LN blocks -> an exit head after every block.

BEExformer, its fp32 counterpart, the vanilla transformer and the binarized and
early-exit baselines are all this module with a different :class:`EncoderConfig`.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

import torch
from torch import nn

from . import canonical
from .attention import ATTENTION_PROBS, Attention
from .early_exit import run_early_exit
from .exits import ExitDecision, ExitRule
from .ffn import FFN_KINDS, make_ffn
from .init import init_encoder_
from .quantizers import ESTIMATORS, binary_sign, row_scale


@dataclass(frozen=True)
class EncoderConfig:
    """Architecture and precision (the ``encoder`` section of a ModelSpec). Options named
    A1..A6 are the spec's assumptions. The field defaults are the one place the encoder's
    defaults live: the 128-wide reference size (see ``beexbench/adapters/spec.py``); the
    allowed names are the ``Literal`` types, checked when a ModelSpec is made - for ``estimator``
    and ``ffn`` the names of their registries (:data:`~beexbench.models.quantizers.SIGN_ESTIMATORS`,
    :data:`~beexbench.models.ffn.FFNS`: the built-ins below, and any plugin registered there)."""

    d_model: int = 128
    n_heads: int = 4
    n_blocks: int = 6
    d_ff: int = 256
    dropout: float = 0.1
    token_dropout: float = 0.0  # training only: each non-pad token's embedding zeroed with this probability
    weight_bits: Literal[1, 32] = 1  # 1: binarized Linear layers; 32: full precision
    act_bits: Literal[1, 32] = 1  # 1: W1A1 (default); 32: W1A32 ablation
    estimator: Literal[ESTIMATORS] = "g"  # A1: "g" (g'(x) = 2-2|x|), "ste" (clipped STE) or a registered one
    learnable_shift: bool = True  # A3: learnable per-channel shift before sign(activation)
    learnable_act_scale: bool = False  # BiT elastic binarization: learnable scale of sign(activation)
    binary_qk: bool = True  # Q K^T between binary operands (when weights are binary)
    attention_probs: Literal[ATTENTION_PROBS] = "softmax"  # A4: "softmax" | "binary" ({0, alpha}) | "bi-attention"
    binary_embedding: bool = False  # A5: alpha * sign(E) token embedding
    ffn: Literal[FFN_KINDS] = "slfn"  # A6: "slfn" | "slfn3" | "gelu" | a registered one (FFNS)
    exit_heads: bool = True  # an exit head after every block (else only after the last)
    # BERT compatibility (issue 17; see beexbench/backbones/bert.py). None keeps today's model;
    # the packed engine runs only None (beexbench/engine/encoder.py REQUIRED).
    type_vocab_size: int | None = None  # a token-type embedding of this many rows (BERT: 2), type 0 on every token
    layer_norm_eps: float | None = None  # eps of the encoder's LayerNorms (BERT: 1e-12); None: torch's 1e-5

    def to_dict(self) -> dict:
        return asdict(self)


class BinaryEmbedding(nn.Embedding):
    """Token embedding stored as alpha_row * sign(E) (A5)."""

    def __init__(self, num: int, dim: int, estimator: str = "g", **kw) -> None:
        super().__init__(num, dim, **kw)
        self.estimator = estimator
        self.weight_bits = 1

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        if self.training or torch.is_grad_enabled():
            self._cache = None
            w = binary_sign(self.weight, self.estimator) * row_scale(self.weight).unsqueeze(-1)
        else:  # inference: binarize the table once while it is unchanged
            key = (self.weight._version, self.weight.data_ptr())
            if getattr(self, "_cache", None) is None or self._cache[0] != key:
                self._cache = (key, binary_sign(self.weight, self.estimator) * row_scale(self.weight).unsqueeze(-1))
            w = self._cache[1]
        return nn.functional.embedding(ids, w, self.padding_idx)


def _layer_norm(cfg: EncoderConfig) -> nn.LayerNorm:
    """An encoder LayerNorm (embedding and blocks; the exit heads keep torch's eps)."""
    return nn.LayerNorm(cfg.d_model) if cfg.layer_norm_eps is None else nn.LayerNorm(cfg.d_model, eps=cfg.layer_norm_eps)


class Block(nn.Module):
    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        binary = cfg.weight_bits == 1
        lin = dict(
            weight_bits=cfg.weight_bits,
            act_bits=cfg.act_bits if binary else 32,
            estimator=cfg.estimator,
            learnable_shift=cfg.learnable_shift,
            learnable_act_scale=cfg.learnable_act_scale,
        )
        self.attn = Attention(
            cfg.d_model,
            cfg.n_heads,
            linear_kwargs=lin,
            binary_qk=binary and cfg.binary_qk and cfg.act_bits == 1,
            probs=cfg.attention_probs,
            estimator=cfg.estimator,
            dropout=cfg.dropout,
        )
        self.ln1 = _layer_norm(cfg)
        self.ffn = make_ffn(cfg.ffn, cfg.d_model, cfg.d_ff, lin, cfg.dropout)
        self.ln2 = _layer_norm(cfg)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = canonical.norm(self.ln1, h + self.drop(self.attn(h, mask)))
        return canonical.norm(self.ln2, h + self.drop(self.ffn(h)))


class ExitHead(nn.Module):
    """Masked mean-pool over tokens -> LayerNorm -> Linear to classes (full precision)."""

    def __init__(self, d_model: int, num_labels: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(d_model)
        self.out = nn.Linear(d_model, num_labels)

    def forward(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if canonical.active(self):  # the engine's numerics (models/canonical.py)
            normed = canonical.layer_norm(canonical.masked_mean(h, mask), self.norm.weight, self.norm.bias, self.norm.eps)
            return canonical.linear(normed, self.out.weight, self.out.bias)
        m = mask.unsqueeze(-1).to(h.dtype)
        pooled = (h * m).sum(1) / m.sum(1).clamp_min(1.0)
        return self.out(self.norm(pooled))


class EarlyExitEncoder(nn.Module):
    def __init__(self, cfg: EncoderConfig, *, vocab_size: int, max_len: int, num_labels: int) -> None:
        super().__init__()
        self.cfg, self.max_len, self.num_labels = cfg, max_len, num_labels
        if cfg.binary_embedding:
            self.tok = BinaryEmbedding(vocab_size, cfg.d_model, cfg.estimator, padding_idx=0)
        else:
            self.tok = nn.Embedding(vocab_size, cfg.d_model, padding_idx=0)
        self.pos = nn.Embedding(max_len, cfg.d_model)
        if cfg.type_vocab_size is not None:  # BERT's token-type table; every token is type 0 (one segment)
            self.typ = nn.Embedding(cfg.type_vocab_size, cfg.d_model)
        self.emb_norm = _layer_norm(cfg)
        self.emb_drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_blocks))
        n_heads = cfg.n_blocks if cfg.exit_heads else 1
        self.heads = nn.ModuleList(ExitHead(cfg.d_model, num_labels) for _ in range(n_heads))
        init_encoder_(self)

    @property
    def n_exits(self) -> int:
        return len(self.heads)

    @property
    def exit_blocks(self) -> list[int]:
        """The block (1-based) each exit head follows."""
        return list(range(1, self.cfg.n_blocks + 1)) if self.cfg.exit_heads else [self.cfg.n_blocks]

    def head_for(self, block: int) -> nn.Module | None:
        """The exit head after ``block`` (1-based), or None when that block has none."""
        if self.cfg.exit_heads:
            return self.heads[block - 1]
        return self.heads[0] if block == self.cfg.n_blocks else None

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        if ids.shape[1] > self.max_len:
            raise ValueError(f"sequence length {ids.shape[1]} exceeds the model's max_len {self.max_len}")
        pos = torch.arange(ids.shape[1], device=ids.device)
        tok = self.tok(ids)
        if self.training and self.cfg.token_dropout > 0:
            keep = torch.rand(ids.shape, device=ids.device) >= self.cfg.token_dropout
            tok = tok * keep.unsqueeze(-1).to(tok.dtype)
        pos_emb = self.pos(pos)
        if self.cfg.type_vocab_size is not None:
            pos_emb = pos_emb + self.typ(torch.zeros_like(pos))
        return self.emb_drop(canonical.norm(self.emb_norm, tok + pos_emb))

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> list[torch.Tensor]:
        return all_exits(self, ids, mask)

    def infer(self, ids: torch.Tensor, mask: torch.Tensor, rule: ExitRule) -> ExitDecision:
        return early_exit_infer(self, ids, mask, rule)


def all_exits(model: nn.Module, ids: torch.Tensor, mask: torch.Tensor) -> list[torch.Tensor]:
    """Logits of every exit, [n_exits] x [B, C], every block run (any encoder with ``embed``,
    ``blocks`` and ``head_for``)."""
    h = model.embed(ids)
    out = []
    for i, block in enumerate(model.blocks, start=1):
        h = block(h, mask)
        head = model.head_for(i)
        if head is not None:
            out.append(head(h, mask))
    return out


@torch.no_grad()
def early_exit_infer(model: nn.Module, ids: torch.Tensor, mask: torch.Tensor, rule: ExitRule) -> ExitDecision:
    """Early-exit inference for any encoder with ``embed``, ``blocks`` and ``head_for``: rows that exit leave the batch, so the remaining blocks really run only
    for the rows still pending (:func:`~beexbench.models.early_exit.run_early_exit`)."""
    if ids.shape[0] == 0:
        raise ValueError("empty batch")
    blocks, head_for = list(model.blocks), model.head_for

    def step(h: torch.Tensor, mask: torch.Tensor, i: int):
        h = blocks[i - 1](h, mask)
        head = head_for(i)
        return h, None if head is None else head(h, mask)

    return run_early_exit(model.embed(ids), mask, len(blocks), step, rule)
