"""The packed engine's fused inference paths (``_engine.cpp`` via :mod:`._native`).

* The whole model in one C++ call (``ops.infer``): token and position embedding, every
  block, the exit heads and the exit rule, for :class:`FractionalEntropy`,
  :class:`AbsoluteEntropy`, :class:`Static` (as absolute entropy below the largest float) and the
  no-exit :class:`ExitRule` (exactly those classes).
* One C++ call per block and its exit head (``ops.step``: the same loops, on the same blob),
  the rule in Python (or ``ops.frac_entropy``): any other rule, a token embedding the
  whole-model op does not read, or ``BEEXBENCH_ENGINE=steps``.

Used by :meth:`PackedEncoder.infer <beexbench.engine.encoder.PackedEncoder.infer>` while
the native kernels run; both compute the module path's values bit for bit: the engine's
numerics are the reference (:mod:`beexbench.models.canonical`), which the module path
computes with torch ops.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from ..models.early_exit import run_early_exit
from ..models.exits import AbsoluteEntropy, ExitDecision, ExitRule, ExitState, FractionalEntropy, Static
from ._native import engine_choice
from .layers import FFN_LAYERS, PackedLinear

if TYPE_CHECKING:
    from .encoder import PackedEncoder

_ALIGN = 16  # floats: each tensor of the whole-model blob starts on a 64-byte boundary


class _Fast:
    """What ``model._fast`` caches: the whole-model blob (both paths run on it)."""

    __slots__ = ("whole", "tok")

    def __init__(self) -> None:
        self.whole = None
        self.tok = None  # the token embedding (module, codes, scale) the blob was built for (_tok_key)


def _cache(model: "PackedEncoder") -> _Fast:
    if not isinstance(model._fast, _Fast):
        model._fast = _Fast()
    return model._fast


def token_table(tok: nn.Module) -> tuple[int, torch.Tensor, torch.Tensor] | None:
    """``(bits, codes, scale)`` of the token embedding: an ``nn.Embedding`` is format 32
    (its weight), a :class:`~beexbench.engine.embedding.PackedEmbedding` its own format;
    None for anything else (the per-block path then embeds in Python)."""
    from .embedding import PackedEmbedding

    if isinstance(tok, PackedEmbedding):
        return int(tok.bits), tok.codes.detach().contiguous(), tok.scale.detach().float().contiguous()
    if type(tok) is nn.Embedding and tok.max_norm is None:
        return 32, tok.weight.detach().contiguous(), torch.empty(0)
    return None


def _tok_key(tok: nn.Module) -> tuple:
    """The token embedding module and the tensors it holds now (a new table, or new codes
    loaded into the same module, rebuilds the whole-model tensors)."""
    codes = getattr(tok, "codes", None)
    return tok, getattr(tok, "weight", None) if codes is None else codes, getattr(tok, "scale", None)


def whole_tensors(model: "PackedEncoder"):
    """The whole-model op's inputs ``(fparams, words, meta, tok_codes, tok_scale, ln_eps)`` and whether
    the token table is the model's (else a one-row stand-in: only the per-block path runs): every
    fp32 tensor in one float32 blob, every packed weight word-major ([W][out]) in one
    int64 blob, and their offsets and the dimensions in ``meta`` (layout: ``parse_model``
    in _engine.cpp); ``ln_eps`` the encoder's LayerNorm eps (a BERT token-type row is already in
    the position table: nothing else to pass). Cached on the model (``model._fast``); None when the model has
    something the op does not implement (non-fp32 tensors), which then runs the module path."""
    fast = _cache(model)
    key = _tok_key(model.tok)
    if fast.whole is not None and fast.tok is not None and all(a is b for a, b in zip(fast.tok, key)):
        return fast.whole
    fast.whole, fast.tok = None, key
    tok = token_table(model.tok)
    real_tok = tok is not None
    if tok is None:  # embedded in Python (model.embed): the blob's blocks serve the per-block path
        tok = (32, torch.zeros(1, int(model.enc["d_model"])), torch.empty(0))
    floats: list[torch.Tensor] = []
    words: list[torch.Tensor] = []
    nf = nw = 0

    def f(t: torch.Tensor | None) -> int:
        nonlocal nf
        if t is None:
            return -1
        if t.dtype != torch.float32:
            raise TypeError(t.dtype)
        pad = -nf % _ALIGN
        if pad:
            floats.append(torch.zeros(pad))
            nf += pad
        off = nf
        floats.append(t.detach().reshape(-1))
        nf += t.numel()
        return off

    def lin(m: PackedLinear) -> list[int]:
        nonlocal nw
        wp = m.weight_packed.detach()
        off = nw
        words.append(wp.t().contiguous().reshape(-1))
        nw += wp.numel()
        return [off, wp.shape[1], m.in_features, m.out_features, f(m.alpha), f(m.bias), f(m.shift)]

    enc = model.enc
    d = int(enc["d_model"])
    try:
        meta = [1, d, int(model.blocks[0].attn.n_heads), len(model.blocks), 0 if enc["ffn"] == "slfn" else 1,
                int(enc["d_ff"]), int(model.num_labels), int(model.max_len), tok[0], int(tok[1].shape[0]),
                f(model.pos.weight), f(model.emb_norm.weight), f(model.emb_norm.bias)]
        for i, blk in enumerate(model.blocks, start=1):
            for m in (blk.attn.q, blk.attn.k, blk.attn.v, blk.attn.o):
                meta += lin(m)
            for name in FFN_LAYERS[enc["ffn"]]:
                meta += lin(getattr(blk.ffn, name))
            meta += [f(blk.ln1.weight), f(blk.ln1.bias), f(blk.ln2.weight), f(blk.ln2.bias)]
            head = model.head_for(i)
            meta += [0, -1, -1, -1, -1] if head is None else \
                [1, f(head.norm.weight), f(head.norm.bias), f(head.out.weight), f(head.out.bias)]
    except TypeError:
        return None
    fast.whole = ((torch.cat(floats).contiguous(), torch.cat(words).contiguous(), torch.tensor(meta, dtype=torch.long),
                   tok[1], tok[2], model.eps), real_tok)
    return fast.whole


def _rule_args(rule: ExitRule):
    """(code, a, b, min_exit, lower) of the rules the whole-model op runs, else None."""
    kind = type(rule)
    if kind is FractionalEntropy:
        return 1, rule.delta, rule.eps, rule.min_exit, rule.answer == "lower_entropy"
    if kind is AbsoluteEntropy:
        return 2, rule.threshold, 0.0, rule.min_exit, False
    if kind is ExitRule:
        return 0, 0.0, 0.0, 0, False
    if kind is Static:  # absolute entropy below the largest float from block k on: every row exits at k
        return 2, torch.finfo(torch.float32).max, 0.0, rule.min_exit, False
    return None


def infer_fused(model: "PackedEncoder", ops, ids: torch.Tensor, mask: torch.Tensor, rule: ExitRule) -> ExitDecision:
    """Early-exit inference with the C++ ``ops`` (``_native.ops()``): the whole model in one
    call (``ops.infer``) for the rules it implements, else one call per block (the module
    path for a model the ops cannot read)."""
    built = whole_tensors(model)
    if built is None:
        return model.infer_modules(ids, mask, rule)
    whole, real_tok = built
    args = _rule_args(rule)
    if args is not None and real_tok and engine_choice() != "steps":
        if ids.shape[0] == 0:
            raise ValueError("empty batch")
        if ids.shape[1] > model.max_len:
            raise ValueError(f"sequence length {ids.shape[1]} exceeds the model's max_len {model.max_len}")
        if ids.dtype != torch.long or not ids.is_contiguous():
            ids = ids.long().contiguous()
        if mask.dtype != torch.bool or not mask.is_contiguous():
            mask = mask.bool().contiguous()
        logits, blocks = ops.infer(ids, mask, *whole, *args)
        return ExitDecision(logits, blocks)
    return infer_steps(model, ops, ids, mask, rule)


class NativeFractionalEntropy:
    """A :class:`FractionalEntropy` rule's ``start`` / ``step`` run as the C++ op ``ops.frac_entropy``,
    the twin of :func:`~beexbench.models.exits.fractional_entropy_step` (same arguments, same results)."""

    def __init__(self, ops, rule: FractionalEntropy) -> None:
        self.ops, self.rule, self.name = ops, rule, rule.name
        self.lower = rule.answer == "lower_entropy"

    def start(self, batch: int) -> ExitState:
        return ExitState()

    def step(self, block: int, logits: torch.Tensor, state: ExitState, last: bool):
        rule, prev_h = self.rule, state.prev_entropy
        has = prev_h is not None
        done, answer, ent = self.ops.frac_entropy(
            logits, state.prev_logits if has else logits, prev_h if has else logits, has, rule.delta, rule.eps,
            block >= rule.min_exit, self.lower, last)
        return done, answer, ExitState(prev_logits=logits, prev_entropy=ent)


def infer_steps(model: "PackedEncoder", ops, ids: torch.Tensor, mask: torch.Tensor, rule: ExitRule) -> ExitDecision:
    """Early-exit inference with the C++ ``ops.step`` per block (the whole-model loops, row by
    row); rows that exit leave the batch (:func:`~beexbench.models.early_exit.run_early_exit`).
    The fractional-entropy rule runs as ``ops.frac_entropy`` (:class:`NativeFractionalEntropy`);
    any other rule as its own ``step``."""
    whole = whole_tensors(model)[0]
    if ids.shape[0] == 0:
        raise ValueError("empty batch")
    head_for = model.head_for

    def step(h: torch.Tensor, mask: torch.Tensor, i: int):
        h, logits = ops.step(h, mask, *whole, i - 1)
        return h, None if head_for(i) is None else logits

    if type(rule) is FractionalEntropy:
        rule = NativeFractionalEntropy(ops, rule)
    return run_early_exit(model.embed(ids).float().contiguous(), mask.bool().contiguous(), len(model.blocks), step, rule)
