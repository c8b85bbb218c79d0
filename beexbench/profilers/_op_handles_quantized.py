"""torch's dynamic quantized Linear modules, for the operation counter: their op handles
and a traceable stand-in (part of the counter's base set, like the aten handles).

fvcore's tracer cannot capture the packed-parameter objects of
``torch.ao.nn.quantized.dynamic.Linear``; while tracing, each int8 one is replaced by
:class:`Int8LinearStandIn` (same name, same shapes), whose autograd Function traces as
``prim::PythonOp._Int8DynamicLinear`` and is counted like ``quantized::linear_dynamic``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._op_handles import Handle, linear, numel, shape


def linear_dynamic(inputs: list, outputs: list) -> dict[str, int]:
    """quantized::linear_dynamic(x [.., k], packed W): int8 x int8 MACs, plus dynamic
    activation quantization (2/input elt) and rescale + bias (2/output elt)."""
    k = shape(inputs[0])[-1]
    out = numel(outputs[0])
    return {"mac@int8": out * k, "flop": 2 * numel(inputs[0]) + 2 * out}


HANDLES: dict[str, Handle] = {
    "quantized::linear_dynamic": linear_dynamic,
    "prim::PythonOp._Int8DynamicLinear": linear_dynamic,  # the traceable stand-in below
    "quantized::linear_dynamic_fp16": linear,  # fp16 weights: module-declared precision
}


class _Int8DynamicLinear(torch.autograd.Function):
    """Stand-in for ``quantized::linear_dynamic`` during tracing; counted by the
    ``prim::PythonOp._Int8DynamicLinear`` handle."""

    @staticmethod
    def forward(ctx, x, weight, bias):
        return F.linear(x, weight, bias)


class Int8LinearStandIn(nn.Module):
    def __init__(self, qlinear: nn.Module) -> None:
        super().__init__()
        self.register_buffer("weight", qlinear.weight().dequantize())
        bias = qlinear.bias()
        self.register_buffer("bias", None if bias is None else bias.detach())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _Int8DynamicLinear.apply(x, self.weight, self.bias)


def stand_in(module: nn.Module) -> nn.Module | None:
    """The traceable stand-in of a dynamic int8 Linear (None for any other module)."""
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

    if isinstance(module, DynamicLinear) and module.weight().dtype == torch.qint8:
        return Int8LinearStandIn(module)
    return None
