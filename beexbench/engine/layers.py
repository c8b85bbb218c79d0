"""The packed engine's layers: :class:`PackedLinear` (W1A1 on packed words),
:class:`PackedQK` (sign(q) . sign(k)^T), fp32 :class:`FloatMatMul` (A.V), and the
attention, FFN and block built from them, named as the trained model's modules.

While traced (by the operation counter) the packed products run as the
``beexbench_engine`` dispatcher ops (:mod:`._traced_ops`), defined on that first use.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .. import kernels
from ..models import canonical
from ._traced_ops import OP_HANDLES, traced_ops

FFN_LAYERS = {"slfn": ("w1", "w2", "w3", "w4"), "gelu": ("w1", "w2")}  # each FFN's packed layers, in order


def _plain(x: torch.Tensor) -> torch.Tensor:
    # the kernels are inference-only: the packed products are constants for autograd
    return x.detach() if x.requires_grad else x


class PackedLinear(nn.Module):
    """y = (bits(x + shift) . bits(W)) * alpha + bias on packed words.

    Buffers ``weight_packed`` (int64 view of uint64 [out, ceil(in/64)]), ``bias`` [out],
    ``shift`` [in]; ``alpha`` [out] is a plain tensor attribute (the size profiler counts
    it as the 1-bit weight's scale, not as an extra buffer)."""

    weight_bits = 1  # declared like QuantLinear: a 1-bit weight (logical [out, in]) ...
    act_bits = 1  # ... times a 1-bit activation

    def __init__(self, in_features: int, out_features: int, bias: bool = True, shift: bool = True) -> None:
        super().__init__()
        self.in_features, self.out_features = int(in_features), int(out_features)
        self.register_buffer("weight_packed", torch.zeros(out_features, kernels.words_for(in_features), dtype=torch.int64))
        self.alpha = torch.ones(out_features)
        self.register_buffer("bias", torch.zeros(out_features) if bias else None)
        self.register_buffer("shift", torch.zeros(in_features) if shift else None)

    def _apply(self, fn, *args, **kwargs):
        out = super()._apply(fn, *args, **kwargs)
        self.alpha = fn(self.alpha)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = _plain(x)
        if self.shift is not None:
            x = x + self.shift  # the float model's ActivationBinarizer add, then bit = (x >= 0)
        lead = x.shape[:-1]
        x2 = x.reshape(-1, self.in_features)
        if torch.jit.is_tracing():
            y = traced_ops().binary_linear(x2, self.weight_packed, self.alpha, self.bias, self.in_features)
        else:
            y = kernels.binary_linear(x2, self.weight_packed, self.alpha, self.bias, self.in_features)
        return y.view(*lead, self.out_features)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}, shift={self.shift is not None}, packed W1A1")

    @staticmethod
    def op_handles() -> dict:
        """The operation counter's handles for the traced packed products (per analysis)."""
        return dict(OP_HANDLES)


class PackedQK(nn.Module):
    """sign(q) . sign(k)^T for [B, H, L, d] queries and keys: one kernel call for all
    B x H heads (float32 of exact integers, as the float model's +-1 matmul)."""

    bits = 1
    op_handles = staticmethod(PackedLinear.op_handles)  # the same handle set

    def forward(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        b, h, lq, lk = q.shape[0], q.shape[1], q.shape[2], k.shape[2]
        # flatten, not reshape(b * h, ...): a traced size product would count as a FLOP
        q3, k3 = _plain(q).flatten(0, 1), _plain(k).flatten(0, 1)
        if torch.jit.is_tracing():
            s = traced_ops().binary_qk(q3, k3)
        else:
            s = kernels.binary_qk_batched(q3, k3)
        return s.view(b, h, lq, lk)


class FloatMatMul(nn.Module):
    """``a @ b`` in fp32 (A.V), a module so counters attribute it."""

    bits = 32

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.matmul(a, b)


class PackedAttention(nn.Module):
    def __init__(self, d_model: int, n_heads: int, shift: bool) -> None:
        super().__init__()
        self.n_heads, self.d_head = n_heads, d_model // n_heads
        self.q, self.k, self.v, self.o = (PackedLinear(d_model, d_model, True, shift) for _ in range(4))
        self.qk = PackedQK()
        self.av = FloatMatMul()

    def forward(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, l, _ = h.shape
        H, dh = self.n_heads, self.d_head
        q = self.q(h).view(b, l, H, dh).transpose(1, 2)
        k = self.k(h).view(b, l, H, dh).transpose(1, 2)
        v = self.v(h).view(b, l, H, dh).transpose(1, 2)
        if canonical.counting():  # an operation counter: ATen's ops, counted as the float model's
            aq, ak = q.abs().mean(-1, keepdim=True), k.abs().mean(-1, keepdim=True)
            scores = self.qk(q, k) * (aq * ak.transpose(-1, -2))
            scores = scores / math.sqrt(dh)
            p = torch.softmax(scores.masked_fill(~mask[:, None, None, :], float("-inf")), dim=-1)
            ctx = self.av(p, v)
        else:  # the engine's numerics, bit for bit (models/canonical.py)
            aq, ak = canonical.abs_mean(q), canonical.abs_mean(k)
            scores = canonical.scale_scores(self.qk(q, k) * (aq * ak.transpose(-1, -2)), dh)
            ctx = canonical.attention_context(scores, v, mask)
        return self.o(ctx.transpose(1, 2).reshape(b, l, -1))


class PackedSLFN(nn.Module):
    """(sigmoid(h W1) W2) * (tanh(h W3) W4), every W packed."""

    def __init__(self, d_model: int, d_ff: int, shift: bool) -> None:
        super().__init__()
        self.w1 = PackedLinear(d_model, d_ff, True, shift)
        self.w2 = PackedLinear(d_ff, d_model, True, shift)
        self.w3 = PackedLinear(d_model, d_ff, True, shift)
        self.w4 = PackedLinear(d_ff, d_model, True, shift)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        if canonical.counting():
            return self.w2(torch.sigmoid(self.w1(h))) * self.w4(torch.tanh(self.w3(h)))
        return self.w2(canonical.sigmoid(self.w1(h))) * self.w4(canonical.tanh(self.w3(h)))


class PackedGeluFFN(nn.Module):
    def __init__(self, d_model: int, d_ff: int, shift: bool) -> None:
        super().__init__()
        self.w1 = PackedLinear(d_model, d_ff, True, shift)
        self.w2 = PackedLinear(d_ff, d_model, True, shift)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        # the exact (erf) GELU, as the float model's GeluFFN and BERT (not the tanh approximation),
        # with the engine's erf where it cannot change w2's input bits (canonical.gelu)
        if canonical.counting():
            return self.w2(nn.functional.gelu(self.w1(h), approximate="none"))
        return self.w2(canonical.gelu(self.w1(h), self.w2.shift))


class PackedBlock(nn.Module):
    def __init__(self, d_model: int, n_heads: int, d_ff: int, ffn: str, shift: bool, eps: float = 1e-5) -> None:
        super().__init__()
        self.attn = PackedAttention(d_model, n_heads, shift)
        self.ln1 = canonical.LayerNorm(d_model, eps=eps)  # eps: the encoder's (BERT: 1e-12)
        self.ffn = PackedSLFN(d_model, d_ff, shift) if ffn == "slfn" else PackedGeluFFN(d_model, d_ff, shift)
        self.ln2 = canonical.LayerNorm(d_model, eps=eps)

    def forward(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = self.ln1(h + self.attn(h, mask))
        return self.ln2(h + self.ffn(h))
