"""The feed-forward sub-layers: SLFN (A6 default), its three-gate variant, plain GELU FFN.

They are the entries of :data:`FFNS`, a :class:`~beexbench._registry.Registry` of classes
``cls(d_model, d_ff, linear_kwargs, dropout) -> nn.Module`` (``[B, L, d_model]`` in and out;
``linear_kwargs`` are the :class:`~beexbench.models.layers.QuantLinear` settings of the model's
precision). The built-ins are added on the registry's first lookup (importing this module
registers nothing); another FFN comes in through the ``beexbench.ffns`` entry-point group or
``register_ffn("name", cls)``, and its name is then a valid ``encoder.ffn`` of a ModelSpec.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .._registry import Registry
from ._registration import registrar
from . import canonical
from .layers import QuantLinear

_BUILTIN_FFNS = {"slfn": "beexbench.models.ffn:SLFN", "slfn3": "beexbench.models.ffn:SLFN3",
                 "gelu": "beexbench.models.ffn:GeluFFN"}
FFN_KINDS = tuple(_BUILTIN_FFNS)  # the built-in names (EncoderConfig.ffn's Literal type)
FFN_ENTRY_POINT_GROUP = "beexbench.ffns"
FFNS: Registry[Callable[..., nn.Module]] = Registry("ffn", entry_point_group=FFN_ENTRY_POINT_GROUP,
                                                    builtins=_BUILTIN_FFNS)
register_ffn = registrar(FFNS)


class SLFN(nn.Module):
    """Selective Learn-Forget Network (A6 default, from Transformer_SLFN_PSCE):
    SLFN(h) = (sigmoid(h W1 + b1) W2 + b2) * (tanh(h W3 + b3) W4 + b4)."""

    def __init__(self, d_model: int, d_ff: int, linear_kwargs: dict, dropout: float = 0.0) -> None:
        super().__init__()
        self.w1 = QuantLinear(d_model, d_ff, **linear_kwargs)
        self.w2 = QuantLinear(d_ff, d_model, **linear_kwargs, input_center=0.5)  # input is a sigmoid
        self.w3 = QuantLinear(d_model, d_ff, **linear_kwargs)
        self.w4 = QuantLinear(d_ff, d_model, **linear_kwargs)
        self.dropout = nn.Dropout(dropout)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        if canonical.active(self):  # the engine's numerics (models/canonical.py)
            return self.w2(canonical.sigmoid(self.w1(h))) * self.w4(canonical.tanh(self.w3(h)))
        select = self.w2(self.dropout(torch.sigmoid(self.w1(h))))
        learn = self.w4(self.dropout(torch.tanh(self.w3(h))))
        return select * learn


class SLFN3(nn.Module):
    """Three-gate variant (A6 option; the paper's exact equations are unknown):
    one selective-learn gate s and two forget gates f1, f2,
        c = tanh(h Wc) ; s = sigmoid(h Ws) ; n = (s * c) Wo
        f1 = sigmoid(h Wf1) ; f2 = sigmoid(h Wf2)
        SLFN3(h) = f1 * h_forget + f2 * n,  with h_forget = -h (forgetting the input
    that the residual adds back), i.e. out = f2 * n - f1 * h.
    """

    def __init__(self, d_model: int, d_ff: int, linear_kwargs: dict, dropout: float = 0.0) -> None:
        super().__init__()
        self.wc = QuantLinear(d_model, d_ff, **linear_kwargs)
        self.ws = QuantLinear(d_model, d_ff, **linear_kwargs)
        self.wo = QuantLinear(d_ff, d_model, **linear_kwargs)
        self.wf1 = QuantLinear(d_model, d_model, **linear_kwargs)
        self.wf2 = QuantLinear(d_model, d_model, **linear_kwargs)
        self.dropout = nn.Dropout(dropout)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        n = self.wo(self.dropout(torch.sigmoid(self.ws(h)) * torch.tanh(self.wc(h))))
        return torch.sigmoid(self.wf2(h)) * n - torch.sigmoid(self.wf1(h)) * h


class GeluFFN(nn.Module):
    """The standard transformer FFN: GELU(h W1 + b1) W2 + b2."""

    def __init__(self, d_model: int, d_ff: int, linear_kwargs: dict, dropout: float = 0.0) -> None:
        super().__init__()
        self.w1 = QuantLinear(d_model, d_ff, **linear_kwargs)
        self.w2 = QuantLinear(d_ff, d_model, **linear_kwargs)
        self.dropout = nn.Dropout(dropout)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        if canonical.active(self) and self.w2.input_quantizer is not None:  # the engine's numerics
            return self.w2(canonical.gelu(self.w1(h), self.w2.input_quantizer.shift))
        return self.w2(self.dropout(F.gelu(self.w1(h))))


def make_ffn(kind: str, d_model: int, d_ff: int, linear_kwargs: dict, dropout: float) -> nn.Module:
    """The FFN registered as ``kind`` (:data:`FFNS`)."""
    if kind not in FFNS:
        raise ValueError(f"unknown ffn '{kind}': use one of {tuple(FFNS.names(sort=False))}")
    return FFNS.get(kind)(d_model, d_ff, linear_kwargs, dropout)
