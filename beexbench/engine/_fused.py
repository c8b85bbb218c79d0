"""The packed engine's fused inference path: one C++ call per block and its exit head
(``_engine.cpp`` via :mod:`._native`), and the fractional-entropy rule in C++ too.

Used by :meth:`PackedEncoder.infer <beexbench.engine.encoder.PackedEncoder.infer>` while
the native kernels run; it computes the module path's values op for op.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from ..models.exits import ExitDecision, ExitRule, FractionalEntropy
from .layers import FFN_LAYERS, PackedLinear

if TYPE_CHECKING:
    from .encoder import PackedEncoder


def flat_tensors(model: "PackedEncoder") -> tuple[list[list[torch.Tensor]], list[list[torch.Tensor]], int]:
    """Per block: its tensors in the fused step's order, and its head's (or []); the FFN
    code (0 slfn, 1 gelu). Cached on the model (``model._fast``) until its tensors change."""
    if model._fast is None:
        none = torch.empty(0)

        def lin(m: PackedLinear) -> list[torch.Tensor]:
            return [m.weight_packed, m.alpha, none if m.bias is None else m.bias,
                    none if m.shift is None else m.shift]

        blocks, heads = [], []
        for i, blk in enumerate(model.blocks, start=1):
            t = []
            for m in (blk.attn.q, blk.attn.k, blk.attn.v, blk.attn.o):
                t += lin(m)
            t += [blk.ln1.weight.detach(), blk.ln1.bias.detach()]
            for name in FFN_LAYERS[model.enc["ffn"]]:
                t += lin(getattr(blk.ffn, name))
            t += [blk.ln2.weight.detach(), blk.ln2.bias.detach()]
            blocks.append(t)
            head = model.head_for(i)
            heads.append([] if head is None else [head.norm.weight.detach(), head.norm.bias.detach(),
                                                  head.out.weight.detach(), head.out.bias.detach()])
        model._fast = (blocks, heads, 0 if model.enc["ffn"] == "slfn" else 1)
    return model._fast


def infer_fused(model: "PackedEncoder", ops, ids: torch.Tensor, mask: torch.Tensor, rule: ExitRule) -> ExitDecision:
    """Early-exit inference with the fused C++ ``ops`` (``_native.ops()``); rows that exit
    leave the batch. The fractional-entropy rule runs as ``ops.frac_entropy``, the C++
    twin of :func:`~beexbench.models.exits.fractional_entropy_step`; any other rule as
    its own ``step``."""
    blocks_t, heads_t, ffn = flat_tensors(model)
    n = ids.shape[0]
    if n == 0:
        raise ValueError("empty batch")
    h = model.embed(ids)
    neg = ~mask[:, None, None, :]
    m = mask.unsqueeze(-1).to(h.dtype)
    msum = m.sum(1).clamp_min(1.0)
    rows = torch.arange(n)
    logits_out = torch.empty(n, model.num_labels)
    blocks_out = torch.empty(n, dtype=torch.long)
    frac = type(rule) is FractionalEntropy
    state = None if frac else rule.start(n)
    prev_l = prev_h = None
    last_block = len(model.blocks)
    n_heads = model.blocks[0].attn.n_heads
    for i in range(1, last_block + 1):
        h, logits = ops.step(h, neg, m, msum, blocks_t[i - 1], heads_t[i - 1], n_heads, ffn)
        if not heads_t[i - 1]:
            continue
        last = i == last_block
        if frac:
            has = prev_h is not None
            done, answer, ent = ops.frac_entropy(
                logits, prev_l if has else logits, prev_h if has else logits, has, rule.delta, rule.eps,
                i >= rule.min_exit, rule.answer == "lower_entropy", last)
            prev_l, prev_h = logits, ent
        else:
            done, answer, state = rule.step(i, logits, state, last=last)
        if n == 1:  # batch 1: no row bookkeeping
            if bool(done):
                return ExitDecision(answer, torch.full((1,), i, dtype=torch.long))
            continue
        if done.any():
            logits_out[rows[done]] = answer[done]
            blocks_out[rows[done]] = i
            keep = ~done
            if not keep.any():
                break
            h, neg, m, msum, rows = h[keep], neg[keep], m[keep], msum[keep], rows[keep]
            if frac:
                prev_l, prev_h = prev_l[keep], prev_h[keep]
            else:
                state = state.select(keep)
    return ExitDecision(logits_out, blocks_out)
