"""Weight-only low-bit baselines: int8 or int4 weights, fp32 activations, on torch's CPU
weight-only kernels (``aten::_weight_int8pack_mm``, ``aten::_weight_int4pack_mm_for_cpu``)."""
from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from beexbench.profilers._op_handles import numel, shape

from ._ptq import PostTrainingQuantized, plain_linears

INT4_GROUP = 32  # weights per int4 scale/zero group (along the input dimension)
INT4_INNER_K_TILES = 2


class WeightOnlyLinear(nn.Module):
    """y = x @ dequant(W_q)^T + b with W_q stored at ``bits`` (8: per output channel,
    symmetric; 4: asymmetric per group of ``INT4_GROUP`` inputs), fp32 activations.

    State dict (plain tensors): 8-bit ``weight`` int8 [N, K] and ``weight_scale`` [N];
    4-bit ``weight_packed`` uint8 [N, K/2] (two nibbles a byte, low nibble = even column)
    and ``scales_and_zeros`` [K/group, N, 2]; ``bias``. The kernel's own packed int4
    layout is CPU-specific, so it is rebuilt from the nibbles at load (a non-persistent buffer).
    """

    def __init__(self, in_features: int, out_features: int, bits: int, bias: bool = True) -> None:
        super().__init__()
        if bits not in (4, 8):
            raise ValueError("WeightOnlyLinear supports bits 4 or 8")
        self.in_features, self.out_features, self.bits = in_features, out_features, bits
        n, k = out_features, in_features
        if bits == 8:
            self.register_buffer("weight", torch.zeros(n, k, dtype=torch.int8))
            self.register_buffer("weight_scale", torch.ones(n))
        else:
            self.register_buffer("weight_packed", torch.zeros(n, k // 2, dtype=torch.uint8))
            self.register_buffer("scales_and_zeros", torch.zeros(k // INT4_GROUP, n, 2))
            self.register_buffer("_kernel_weight", torch.empty(0, dtype=torch.uint8), persistent=False)
        self.register_buffer("bias", torch.zeros(n) if bias else None)

    @staticmethod
    def supports(lin: nn.Linear, bits: int) -> bool:
        """int4 kernels need K divisible by the group size and N by 16."""
        return bits == 8 or (lin.in_features % INT4_GROUP == 0 and lin.out_features % 16 == 0)

    @classmethod
    def from_linear(cls, lin: nn.Linear, bits: int) -> "WeightOnlyLinear":
        out = cls(lin.in_features, lin.out_features, bits, bias=lin.bias is not None)
        w = lin.weight.detach().float()
        if bits == 8:
            scale = (w.abs().amax(1) / 127).clamp_min(1e-12)
            out.weight.copy_(torch.round(w / scale[:, None]).clamp(-127, 127).to(torch.int8))
            out.weight_scale.copy_(scale)
        else:
            g = w.view(w.shape[0], -1, INT4_GROUP)
            lo, hi = g.amin(-1), g.amax(-1)
            scale = ((hi - lo) / 15).clamp_min(1e-12)
            q = torch.round((g - lo[..., None]) / scale[..., None]).clamp(0, 15).to(torch.uint8).view_as(w)
            out.weight_packed.copy_(q[:, 0::2] | (q[:, 1::2] << 4))
            # the kernel computes (q - 8) * scale + zero
            out.scales_and_zeros.copy_(torch.stack([scale, lo + 8 * scale], -1).transpose(0, 1))
            out._repack()
        if lin.bias is not None:
            out.bias.copy_(lin.bias.detach())
        return out.eval()

    def _repack(self) -> None:
        q = torch.stack([self.weight_packed & 0xF, self.weight_packed >> 4], -1).view(self.out_features, -1)
        self._kernel_weight = torch.ops.aten._convert_weight_to_int4pack_for_cpu(q.to(torch.int32), INT4_INNER_K_TILES)

    def _load_from_state_dict(self, *args, **kwargs):
        super()._load_from_state_dict(*args, **kwargs)
        if self.bits == 4:
            self._repack()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x2 = x.reshape(-1, self.in_features)
        if self.bits == 8:
            y = torch.ops.aten._weight_int8pack_mm(x2, self.weight, self.weight_scale)
        else:
            y = torch.ops.aten._weight_int4pack_mm_for_cpu(x2, self._kernel_weight, INT4_GROUP, self.scales_and_zeros)
        if self.bias is not None:
            y = y + self.bias
        return y.view(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, W{self.bits}A32"

    @staticmethod
    def op_handles() -> dict:
        """The operation counter's handles for this module's kernels, used when a model
        holding it is counted (beexbench.profilers._op_handle_sets)."""
        return {"aten::_weight_int8pack_mm": _weight_only_mm, "aten::_weight_int4pack_mm_for_cpu": _weight_only_mm}


def _weight_only_mm(inputs: list, outputs: list) -> dict[str, int]:
    """aten::_weight_int{8,4}pack_mm(x [M, K], W, ...): M*N*K MACs at the module's declared
    precision (low-bit weight x fp32 activation)."""
    return {"mac": numel(outputs[0]) * shape(inputs[0])[-1]}


class _WeightOnly(PostTrainingQuantized):
    """Helper base: the fp32 counterpart with its block Linears converted to weight-only."""

    quantized_types = (WeightOnlyLinear,)
    weight_bits: ClassVar[int] = 8

    @property
    def product_bits(self) -> tuple[int, int]:  # type: ignore[override]
        return (32, self.weight_bits)

    def convert(self, float_model: nn.Module) -> nn.Module:
        # the exit heads (d_model -> classes) stay fp32, as in BEExformer
        model = plain_linears(float_model, skip=("heads",))
        for name, mod in list(model.named_modules()):
            if type(mod) is nn.Linear and not name.startswith("heads") and WeightOnlyLinear.supports(mod, self.weight_bits):
                parent, _, child = name.rpartition(".")
                setattr(model.get_submodule(parent), child, WeightOnlyLinear.from_linear(mod, self.weight_bits))
        return model.eval()


class Int8WeightOnly(_WeightOnly):
    """fp32 counterpart with int8 weight-only block Linears (per-channel, fp32 activations; torch CPU kernel)."""

    weight_bits = 8

    def precision_notes(self) -> tuple[str, ...]:
        return ("int8 weights per output channel, fp32 activations (aten::_weight_int8pack_mm); exit heads, "
                "attention products, embeddings and LayerNorms fp32",)


class Int4WeightOnly(_WeightOnly):
    """fp32 counterpart with int4 weight-only block Linears (groups of 32, fp32 activations; torch CPU kernel)."""

    weight_bits = 4

    def precision_notes(self) -> tuple[str, ...]:
        return (f"int4 weights, asymmetric per group of {INT4_GROUP} inputs (aten::_weight_int4pack_mm_for_cpu), "
                "fp32 activations; Linears whose shape the kernel does not take (N % 16, K % 32), exit heads, "
                "attention products, embeddings and LayerNorms fp32",)
