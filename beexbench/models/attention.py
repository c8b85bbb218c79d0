"""Multi-head self-attention whose projections and products declare their precision."""
from __future__ import annotations

import math

import torch
from torch import nn

from . import canonical
from .layers import QuantLinear
from .quantizers import binary_sign


class MatMul(nn.Module):
    """``a @ b`` as a module, so counters can attribute the product and read its
    precision (``bits=1``: both operands are +-1; the scales are applied outside)."""

    def __init__(self, bits: int = 32) -> None:
        super().__init__()
        self.bits = bits

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.matmul(a, b)


class _StepSTE(torch.autograd.Function):
    """1[x > 0] forward, clipped straight-through backward (BiBERT's Bi-Attention)."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return (x > 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * (x.abs() <= 1).to(grad.dtype)


class _ThresholdSTE(torch.autograd.Function):
    """1[p >= t] forward, straight-through backward (BiT's {0, alpha} probabilities)."""

    @staticmethod
    def forward(ctx, p, t):
        return (p >= t).to(p.dtype)

    @staticmethod
    def backward(ctx, grad):
        return grad, None


ATTENTION_PROBS = ("softmax", "binary", "bi-attention")


class Attention(nn.Module):
    """Self-attention over ``[B, L, d]`` with a boolean key mask ``[B, L]``.

    ``binary_qk``: Q and K are binarized per token, q_b = a_q * sign(q), and
    ``Q K^T`` is a product between +-1 operands (``qk.bits == 1``) scaled by a_q a_k^T.
    ``probs``: "softmax" (A4 default, full precision), "binary" (A4 option, BiT-style
    {0, alpha} with learnable alpha per head), "bi-attention" (BiBERT: 1[S > 0], no softmax).
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        *,
        linear_kwargs: dict,
        binary_qk: bool = False,
        probs: str = "softmax",
        estimator: str = "g",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model={d_model} must be divisible by n_heads={n_heads}")
        if probs not in ATTENTION_PROBS:
            raise ValueError(f"attention probs '{probs}': use one of {ATTENTION_PROBS}")
        self.n_heads, self.d_head = n_heads, d_model // n_heads
        self.q = QuantLinear(d_model, d_model, **linear_kwargs)
        self.k = QuantLinear(d_model, d_model, **linear_kwargs)
        self.v = QuantLinear(d_model, d_model, **linear_kwargs)
        self.o = QuantLinear(d_model, d_model, **linear_kwargs)
        self.binary_qk, self.probs, self.estimator = binary_qk, probs, estimator
        self.qk = MatMul(bits=1 if binary_qk else 32)
        self.av = MatMul(bits=32)
        self.prob_scale = nn.Parameter(torch.full((n_heads, 1, 1), 0.5)) if probs == "binary" else None
        self.dropout = nn.Dropout(dropout)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        b, l, _ = x.shape
        return x.view(b, l, self.n_heads, self.d_head).transpose(1, 2)

    def forward(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        q, k, v = self._heads(self.q(h)), self._heads(self.k(h)), self._heads(self.v(h))
        if self.binary_qk and self.probs == "softmax" and canonical.active(self):  # the engine's numerics
            aq, ak = canonical.abs_mean(q), canonical.abs_mean(k)
            scores = self.qk(binary_sign(q, self.estimator), binary_sign(k, self.estimator).transpose(-1, -2))
            ctx = canonical.attention_context(canonical.scale_scores(scores * (aq * ak.transpose(-1, -2)), self.d_head),
                                              v, mask)
            b, _, l, _ = ctx.shape
            return self.o(ctx.transpose(1, 2).reshape(b, l, -1))
        if self.binary_qk:
            aq, ak = q.abs().mean(-1, keepdim=True), k.abs().mean(-1, keepdim=True)
            q, k = binary_sign(q, self.estimator), binary_sign(k, self.estimator)
            scores = self.qk(q, k.transpose(-1, -2)) * (aq * ak.transpose(-1, -2))
        else:
            scores = self.qk(q, k.transpose(-1, -2))
        scores = scores / math.sqrt(self.d_head)
        key_mask = mask[:, None, None, :]
        if self.probs == "bi-attention":
            p = _StepSTE.apply(scores) * key_mask
        else:
            p = torch.softmax(scores.masked_fill(~key_mask, float("-inf")), dim=-1)
            if self.probs == "binary":
                alpha = self.prob_scale.abs()
                p = alpha * _ThresholdSTE.apply(p, alpha / 2)
        ctx = self.av(self.dropout(p), v)
        b, _, l, _ = ctx.shape
        return self.o(ctx.transpose(1, 2).reshape(b, l, -1))


