"""Binarizers in the style of larq: a pure function with a custom gradient, and
a thin module that declares its precision.

``sign`` maps 0 to +1 everywhere (forward), so the packed-bit engine, which
stores bit=1 for x >= 0, reproduces the simulated model exactly.

Estimators (the backward of sign):

* ``"g"`` (A1, default): derivative of the piecewise quadratic
  g(x) = -1 (x<-1); 2x+x^2 (-1<=x<0); 2x-x^2 (0<=x<1); 1 (x>=1), i.e.
  g'(x) = 2 - 2|x| on [-1, 1], 0 outside.
* ``"ste"``: the clipped straight-through estimator, 1 on [-1, 1], 0 outside.

They are the entries of :data:`SIGN_ESTIMATORS`, a :class:`~beexbench._registry.Registry` of
functions ``f(x) -> sign(x)`` (sign(0) = +1) whose backward is the estimator, used while
training (inference is :func:`hard_sign` whatever the estimator). The built-ins are added on
the registry's first lookup (importing this module registers nothing); another estimator comes
in through the ``beexbench.estimators`` entry-point group or ``register_estimator("name", fn)``,
and its name is then a valid ``encoder.estimator`` of a ModelSpec.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from .._registry import Registry
from ._registration import registrar

_BUILTIN_ESTIMATORS = {"g": "beexbench.models.quantizers:sign_g", "ste": "beexbench.models.quantizers:sign_ste"}
ESTIMATORS = tuple(_BUILTIN_ESTIMATORS)  # the built-in names (EncoderConfig.estimator's Literal type)
ESTIMATOR_ENTRY_POINT_GROUP = "beexbench.estimators"
SIGN_ESTIMATORS: Registry[Callable[[torch.Tensor], torch.Tensor]] = Registry(
    "sign estimator", entry_point_group=ESTIMATOR_ENTRY_POINT_GROUP, builtins=_BUILTIN_ESTIMATORS)
register_estimator = registrar(SIGN_ESTIMATORS)


def hard_sign(x: torch.Tensor) -> torch.Tensor:
    """sign with sign(0) = +1, no gradient (one op: the counters see one sign)."""
    return torch.where(x >= 0, 1.0, -1.0).to(x.dtype)


def _sign_fast(x: torch.Tensor) -> torch.Tensor:
    """The same values as :func:`hard_sign`, about 5x faster in training's autograd
    Functions (in-place arithmetic instead of a scalar ``where``)."""
    return x.ge(0).to(x.dtype).mul_(2).sub_(1)


class _SignG(torch.autograd.Function):
    """sign forward; backward g'(x) = 2 - 2|x| on [-1, 1], 0 outside (A1)."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return _sign_fast(x)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return x.abs().neg_().add_(1).clamp_(min=0).mul_(2).mul_(grad)  # grad * max(0, 2 - 2|x|)


class _SignSTE(_SignG):
    """sign forward; clipped straight-through backward: 1 on [-1, 1], 0 outside."""

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return x.abs().le_(1).to(grad.dtype).mul_(grad)


sign_g = _SignG.apply
sign_ste = _SignSTE.apply


def binary_sign(x: torch.Tensor, estimator: str = "g") -> torch.Tensor:
    """sign(x) (sign(0) = +1); with a gradient, the backward of the estimator registered as
    ``estimator`` (:data:`SIGN_ESTIMATORS`)."""
    if not (torch.is_grad_enabled() and x.requires_grad):
        return hard_sign(x)  # inference: the estimator only matters for the backward
    if estimator not in SIGN_ESTIMATORS:
        raise ValueError(f"unknown sign estimator '{estimator}': use one of {tuple(SIGN_ESTIMATORS.names(sort=False))}")
    return SIGN_ESTIMATORS.get(estimator)(x)


def row_scale(w: torch.Tensor) -> torch.Tensor:
    """alpha = mean |W| per output row (A2); differentiable, so gradient flows through it."""
    return w.abs().mean(dim=-1)


class WeightBinarizer(nn.Module):
    """W_b = alpha * sign(W), alpha per output row. Returns (sign(W), alpha) so callers
    can apply the scale after the product, as the packed engine does."""

    precision = 1

    def __init__(self, estimator: str = "g") -> None:
        super().__init__()
        self.estimator = estimator

    def forward(self, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return binary_sign(w, self.estimator), row_scale(w)


class ActivationBinarizer(nn.Module):
    """sign(x + b) with an optional learnable per-channel shift b (A3).

    ``center``: where the input distribution sits (0.5 for sigmoid outputs, which are
    never negative: sign(sigmoid(.)) would be +1 everywhere and carry nothing). The shift
    starts at -center (a fixed buffer when the shift is not learnable)."""

    precision = 1

    def __init__(self, channels: int, estimator: str = "g", learnable_shift: bool = True, center: float = 0.0) -> None:
        super().__init__()
        self.estimator = estimator
        init = torch.full((channels,), -float(center))
        if learnable_shift:
            self.shift = nn.Parameter(init)
        elif center:
            self.register_buffer("shift", init)
        else:
            self.shift = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.shift is not None:
            x = x + self.shift
        return binary_sign(x, self.estimator)
