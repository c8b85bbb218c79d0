"""Linear layers that declare the precision of their weights and of their product.

Every Linear in the models is a :class:`QuantLinear`; ``weight_bits`` and
``act_bits`` are what the size and operation counters read.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .quantizers import ActivationBinarizer, WeightBinarizer


class QuantLinear(nn.Linear):
    """A Linear whose weight (and optionally input) is binarized.

    * ``weight_bits=32``: an ordinary fp32 Linear.
    * ``weight_bits=1, act_bits=32`` (W1A32): y = (x @ sign(W)^T) * alpha + b.
    * ``weight_bits=1, act_bits=1`` (W1A1): y = (sign(x+s) @ sign(W)^T) * alpha + b,
      an XNOR-popcount product on packed bits at deployment.
    * ``learnable_act_scale`` (W1A1, BiT's elastic binarization): y is also multiplied by
      a learnable scalar beta, the scale of the binarized input beta * sign(x+s).

    The scale is applied after the +-1 product, which is the same function as
    (alpha * sign(W)) and lets the packed engine be bit-exact with this layer.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        *,
        weight_bits: int = 32,
        act_bits: int = 32,
        estimator: str = "g",
        learnable_shift: bool = True,
        learnable_act_scale: bool = False,
        input_center: float = 0.0,
    ) -> None:
        super().__init__(in_features, out_features, bias=bias)
        if weight_bits not in (1, 32) or act_bits not in (1, 32):
            raise ValueError("QuantLinear supports weight_bits/act_bits in {1, 32}")
        if act_bits == 1 and weight_bits != 1:
            raise ValueError("binary activations need binary weights (W1A1)")
        self.weight_bits = weight_bits
        self.act_bits = act_bits
        self.weight_quantizer = WeightBinarizer(estimator) if weight_bits == 1 else None
        self.input_quantizer = (
            ActivationBinarizer(in_features, estimator, learnable_shift, input_center) if act_bits == 1 else None
        )
        # BiT's elastic binarization: a learnable scale of the binarized input, applied
        # after the +-1 product like alpha (W1A1 only)
        self.act_scale = nn.Parameter(torch.ones(())) if learnable_act_scale and act_bits == 1 else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.weight_quantizer is None:
            return F.linear(x, self.weight, self.bias)
        if self.input_quantizer is not None:
            x = self.input_quantizer(x)
        w_sign, alpha = self._binary_weight()
        y = F.linear(x, w_sign) * alpha
        if self.act_scale is not None:
            y = y * self.act_scale
        return y + self.bias if self.bias is not None else y

    def _binary_weight(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(sign(W), alpha); cached at inference while the weight is unchanged, as a
        deployed model would store them, so timing does not re-binarize every call."""
        if self.training or torch.is_grad_enabled():
            self._cache = None
            return self.weight_quantizer(self.weight)
        key = (self.weight._version, self.weight.data_ptr())
        cache = getattr(self, "_cache", None)
        if cache is None or cache[0] != key:
            with torch.no_grad():
                cache = (key, *self.weight_quantizer(self.weight))
            self._cache = cache
        return cache[1], cache[2]

    def extra_repr(self) -> str:
        return super().extra_repr() + f", W{self.weight_bits}A{self.act_bits}"
