"""The packed engine's numerics as float32 torch ops: the reference every path of a binarized
model computes *bit for bit*, on every host.

A binarized layer reads only the sign of its input, so a pre-activation that lands within a
rounding error of zero takes the bit its float arithmetic gives it: two paths agree on every bit
only if they compute every quantity that feeds a sign with the same operations in the same order.
ATen's reductions (LayerNorm statistics, softmax sums, the ``P @ V`` matmul of oneDNN / MKL) and
its vectorised exp differ by host and instruction set, so the order is defined here, as the
engine's (``beexbench/engine/_engine.cpp``, every ISA variant), and the packed module path (and
the float model, inside :func:`canonical_numerics`) computes it with elementwise torch ops, each
IEEE-rounded (no FMA: the engine builds with ``-ffp-contract=off``):

* a sum over ``n`` elements (:func:`lane_sum`): element ``i`` into lane ``i % 16`` (zero padded),
  each lane accumulated from 0 chunk by chunk, then lane ``k`` += lane ``k + 8``, ``+ 4``, ``+ 2``,
  ``+ 1``;
* LayerNorm (:func:`layer_norm`): ``mean = sum(x) / d``, ``var = sum((x - mean)^2) / d``,
  ``rstd = 1 / sqrt(var + eps)``, ``y = (x * rstd + (-mean * rstd)) * w + b``;
* exp (:func:`fexp`): Cephes' expf (range reduction by ln 2, degree-5 polynomial); sigmoid
  ``1 / (1 + fexp(-x))``, tanh (Cephes' tanhf), and the erf GELU with Abramowitz-Stegun's erf,
  where ATen's own GELU settles the elements whose bit it could change (:func:`gelu`);
* attention (:func:`attention_context`): the softmax over the real keys only, in their order
  (``e = fexp(s - max)``, ``p = e * (1 / sum(e))``), and ``ctx = sum_j p_j v_j`` summed over the
  keys one after the other from 0.
"""
from __future__ import annotations

import contextlib
import contextvars
import math

import numpy as np
import torch
from torch.nn import functional as F

LANES = 16
_ACTIVE = contextvars.ContextVar("beexbench_canonical_numerics", default=False)


@contextlib.contextmanager
def canonical_numerics(on: bool = True):
    """While active, the float models' inference (not training: gradients off) computes the
    pre-sign quantities with these ops, the engine's own bits; off by default (ATen's kernels,
    the float model as benchmarked)."""
    token = _ACTIVE.set(on)
    try:
        yield
    finally:
        _ACTIVE.reset(token)


def active(module: torch.nn.Module | None = None) -> bool:
    """Whether a float model's module should use these ops now (inside :func:`canonical_numerics`,
    gradients off, the module in eval mode)."""
    return _ACTIVE.get() and not torch.is_grad_enabled() and (module is None or not module.training)


def counting() -> bool:
    """Whether the model runs for an operation counter (traced, or under a torch dispatch mode such
    as ``FlopCounterMode``): the packed layers then run ATen's ops, which the counters attribute
    as the float model's (the numbers do not matter there)."""
    if torch.jit.is_tracing():
        return True
    from torch.utils._python_dispatch import _get_current_dispatch_mode

    return _get_current_dispatch_mode() is not None


def _f32(v: float) -> torch.Tensor:
    return torch.tensor(v, dtype=torch.float32)


def _sqrt(x: torch.Tensor) -> torch.Tensor:
    """IEEE (correctly rounded) float32 sqrt: numpy's, as the engine's ``std::sqrt``; ``torch.sqrt``
    may run MKL's vector library, within 1 ulp but not correctly rounded on every host."""
    return torch.from_numpy(np.sqrt(x.detach().contiguous().numpy()))


def lane_sum(x: torch.Tensor) -> torch.Tensor:
    """Sum over the last dim in the engine's order (see the module docstring)."""
    n = x.shape[-1]
    pad = -n % LANES
    if pad or n == 0:
        x = F.pad(x, (0, pad if n else LANES))
    chunks = x.reshape(*x.shape[:-1], -1, LANES)
    acc = torch.zeros_like(chunks[..., 0, :])
    for c in range(chunks.shape[-2]):
        acc = acc + chunks[..., c, :]
    s = LANES // 2
    while s >= 1:
        acc = acc[..., :s] + acc[..., s:2 * s]
        s //= 2
    return acc[..., 0]


def layer_norm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float) -> torch.Tensor:
    """LayerNorm over the last dim, the engine's ``layer_norm`` (eps added in float32)."""
    d = _f32(x.shape[-1])
    mean = (lane_sum(x) / d).unsqueeze(-1)
    t = x - mean
    var = (lane_sum(t * t) / d).unsqueeze(-1)
    rstd = torch.ones_like(var) / _sqrt(var + _f32(eps))
    return (x * rstd + (-mean) * rstd) * weight + bias


def fexp(x: torch.Tensor) -> torch.Tensor:
    """Cephes' expf, as the engine's ``fexp`` (inputs clamped to [-87.3, 88.7])."""
    x = torch.clamp(x, _f32(-87.3), _f32(88.7))
    fx = x * _f32(1.44269504088896341) + _f32(0.5)
    nf = torch.floor(fx)
    r = x - nf * _f32(0.693359375)
    r = r - nf * _f32(-2.12194440e-4)
    y = torch.full_like(r, 1.9875691500e-4)
    for c in (1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1):
        y = y * r + _f32(c)
    y = y * (r * r) + r
    y = y + _f32(1.0)
    n = nf.to(torch.int32)
    n1 = torch.bitwise_right_shift(n, 1)
    n2 = n - n1
    s1 = torch.bitwise_left_shift(n1 + 127, 23).view(torch.float32)
    s2 = torch.bitwise_left_shift(n2 + 127, 23).view(torch.float32)
    return y * s1 * s2


def sigmoid(x: torch.Tensor) -> torch.Tensor:
    one = _f32(1.0)
    return one / (one + fexp(-x))


def tanh(x: torch.Tensor) -> torch.Tensor:
    """Cephes' tanhf: odd polynomial below 0.625, 1 - 2 / (exp(2|x|) + 1) above."""
    ax = x.abs()
    z = x * x
    p = torch.full_like(z, -5.70498872745e-3)
    for c in (2.06390887954e-2, -5.37397155531e-2, 1.33314422036e-1, -3.33332819422e-1):
        p = p * z + _f32(c) if c > 0 else p * z - _f32(-c)
    small = p * z * x + x
    e = fexp(_f32(2.0) * torch.clamp(ax, max=_f32(44.0)))
    big = _f32(1.0) - _f32(2.0) / (e + _f32(1.0))
    big = torch.where(x < 0, -big, big)
    return torch.where(ax < _f32(0.625), small, big)


def _fgelu(x: torch.Tensor) -> torch.Tensor:
    z = x * _f32(0.70710678118654752440)
    az = z.abs()
    t = _f32(1.0) / (_f32(1.0) + _f32(0.3275911) * az)
    r = torch.full_like(t, 1.061405429)
    for c in (-1.453152027, 1.421413741, -0.284496736, 0.254829592):
        r = r * t + _f32(c) if c > 0 else r * t - _f32(-c)
    e = _f32(1.0) - r * t * fexp(-(z * z))
    return x * _f32(0.5) * (_f32(1.0) + torch.where(z < 0, -e, e))


def gelu(x: torch.Tensor, shift: torch.Tensor | None) -> torch.Tensor:
    """The erf GELU as the engine's ``gelu_ffn`` gives it to the next layer (which reads the bits of
    gelu(x) + shift): the A-S erf GELU, and ATen's GELU kernel for every element whose bit two erfs
    good to 1e-6 could disagree on (padded to a multiple of 64 so each takes ATen's vector body)."""
    g = _fgelu(x)
    v = g if shift is None else g + shift
    doubt = v.abs() <= _f32(1e-5) * (x.abs() + g.abs()) + _f32(1e-30)
    if bool(doubt.any()):
        xs = x[doubt]
        nd = xs.numel()
        padded = F.pad(xs, (0, -nd % 64))
        g = g.masked_scatter(doubt, F.gelu(padded, approximate="none")[:nd])
    return g


def _key_order(mask: torch.Tensor) -> torch.Tensor:
    """Per row, the key positions with the real ones first, in their order ([B, L] indices)."""
    return torch.sort((~mask).to(torch.int8), dim=1, stable=True).indices


def attention_context(s: torch.Tensor, v: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """softmax(s) @ v over the real keys in the engine's order: scores ``s`` [B, H, Lq, L]
    (already scaled), values ``v`` [B, H, L, dh], key mask [B, L] -> [B, H, Lq, dh]."""
    order = _key_order(mask)  # [B, L]
    real = torch.gather(mask, 1, order)[:, None, None, :]
    s = torch.gather(s, 3, order[:, None, None, :].expand_as(s))
    v = torch.gather(v, 2, order[:, None, :, None].expand_as(v))
    mx = s.masked_fill(~real, float("-inf")).amax(-1, keepdim=True)
    e = torch.where(real, fexp(s - mx), torch.zeros((), dtype=s.dtype))
    p = e * (torch.ones_like(mx) / lane_sum(e).unsqueeze(-1))
    n = int(mask.sum(1).max()) if mask.numel() else 0
    acc = torch.zeros(*s.shape[:-1], v.shape[-1], dtype=s.dtype)
    for j in range(n):
        acc = acc + p[..., j : j + 1] * v[:, :, j : j + 1, :]
    return acc


def abs_mean(x: torch.Tensor) -> torch.Tensor:
    """mean |x| over the last dim (keepdim), the engine's ``absmean_bits``."""
    return (lane_sum(x.abs()) / _f32(x.shape[-1])).unsqueeze(-1)


def scale_scores(s: torch.Tensor, d_head: int) -> torch.Tensor:
    """s / sqrt(d_head), the divisor rounded to float32 first (as the engine and ATen do)."""
    return s / _f32(math.sqrt(d_head))  # math.sqrt: IEEE double, then float32 (as the engine)


def masked_mean(h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The exit head's pooling: the real tokens' rows summed one after the other, / their count
    (at least 1): [B, L, d], [B, L] -> [B, d]."""
    order = _key_order(mask)
    h = torch.gather(h, 1, order[:, :, None].expand_as(h))
    real = torch.gather(mask, 1, order)
    acc = torch.zeros(h.shape[0], h.shape[2], dtype=h.dtype)
    for j in range(int(mask.sum(1).max()) if mask.numel() else 0):
        acc = acc + torch.where(real[:, j : j + 1], h[:, j], torch.zeros((), dtype=h.dtype))
    return acc / mask.sum(1, keepdim=True).clamp_min(1).to(h.dtype)


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """x @ weight.T + bias with each dot product a :func:`lane_sum` (the exit heads' output layer)."""
    return lane_sum(x.unsqueeze(-2) * weight) + bias


class LayerNorm(torch.nn.LayerNorm):
    """``nn.LayerNorm`` (same parameters, same state dict, counted as one) computed by
    :func:`layer_norm` (except while traced by the operation counter, where only the op counts)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.jit.is_tracing():
            return super().forward(x)
        return layer_norm(x, self.weight, self.bias, self.eps)


def norm(ln: torch.nn.LayerNorm, x: torch.Tensor) -> torch.Tensor:
    """``ln(x)``, by :func:`layer_norm` while :func:`active`."""
    return layer_norm(x, ln.weight, ln.bias, ln.eps) if active(ln) else ln(x)
