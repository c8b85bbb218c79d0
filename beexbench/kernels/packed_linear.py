""":class:`PackedBinaryLinear`: an inference-only binarized Linear with pre-packed signs."""

from __future__ import annotations

import torch
from torch import nn

from ._checks import KernelInputError, _check_float, words_for
from .products import binary_layout, binary_linear, pack_rows


class PackedBinaryLinear(nn.Module):
    """Inference-only binarized linear layer with pre-packed sign weights.

    Buffers (all saved in ``state_dict``, safetensors-compatible):
    ``weight_packed`` uint64 [out, ceil(in/64)], ``alpha`` float32 [out],
    ``bias`` float32 [out] (only when built with a bias).
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True) -> None:
        super().__init__()
        if in_features < 1 or out_features < 1:
            raise KernelInputError(
                f"PackedBinaryLinear needs positive sizes, got in={in_features}, out={out_features}")
        self.in_features = int(in_features)
        self.out_features = int(out_features)
        self.register_buffer(
            "weight_packed",
            torch.zeros(out_features, words_for(in_features), dtype=torch.uint64))
        self.register_buffer("alpha", torch.ones(out_features, dtype=torch.float32))
        if bias:
            self.register_buffer("bias", torch.zeros(out_features, dtype=torch.float32))
        else:
            self.register_buffer("bias", None)

    @classmethod
    def from_float(
        cls,
        weight: torch.Tensor,
        alpha: torch.Tensor | None = None,
        bias: torch.Tensor | None = None,
    ) -> "PackedBinaryLinear":
        """Build from a real-valued weight [N, K] (only its signs are kept).

        ``alpha`` [N] defaults to the mean absolute value of each weight row.
        """
        weight = _check_float(weight, "weight").detach()
        if weight.dim() != 2 or weight.numel() == 0:
            raise KernelInputError(f"weight must be a non-empty 2-D [N, K] tensor, got {tuple(weight.shape)}")
        n, k = weight.shape
        if alpha is None:
            alpha = weight.abs().mean(dim=1)
        alpha = _check_float(alpha, "alpha").detach()
        if alpha.shape != (n,):
            raise KernelInputError(f"alpha must have shape ({n},), got {tuple(alpha.shape)}")
        if bias is not None:
            bias = _check_float(bias, "bias").detach()
            if bias.shape != (n,):
                raise KernelInputError(f"bias must have shape ({n},), got {tuple(bias.shape)}")
        mod = cls(k, n, bias=bias is not None)
        mod.weight_packed.copy_(pack_rows(weight.float()))
        mod.alpha.copy_(alpha.float())
        if bias is not None:
            mod.bias.copy_(bias.float())
        return mod

    def _layout(self) -> torch.Tensor | None:
        """The weights as the kernels' backend reads them (:func:`binary_layout`), built on the
        first call and again whenever ``weight_packed`` changes (in place: its version counter;
        or replaced: its storage); never saved (the state_dict keeps the 1-bit rows only)."""
        w = self.weight_packed
        key = (w.data_ptr(), w._version, tuple(w.shape))
        cached = self.__dict__.get("_laid")
        if cached is None or cached[0] != key:
            cached = (key, binary_layout(w, self.in_features))
            self.__dict__["_laid"] = cached
        return cached[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return binary_linear(x, self.weight_packed, self.alpha, self.bias, self.in_features, layout=self._layout())

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}")
