"""Post-training dynamic int8 quantization of the fp32 counterpart (torch's int8 kernels)."""
from __future__ import annotations

import torch
import torch.ao.nn.quantized.dynamic as nnqd
from torch import nn

from ._ptq import PostTrainingQuantized, plain_linears, quiet_quantization

# Real int8 kernels: fbgemm on x86, qnnpack on ARM (x86/onednn only where fbgemm is absent).
ENGINE_PREFERENCE = ("fbgemm", "qnnpack", "x86", "onednn")


def int8_engine() -> str:
    supported = torch.backends.quantized.supported_engines
    arm = any(a in __import__("platform").machine().lower() for a in ("arm", "aarch64"))
    order = ("qnnpack", "fbgemm", "x86", "onednn") if arm else ENGINE_PREFERENCE
    for engine in order:
        if engine in supported:
            return engine
    raise RuntimeError(f"no quantized engine in this torch build (supported: {supported})")


class Int8Linear(nnqd.Linear):
    """torch's dynamic int8 Linear (``quantized::linear_dynamic``) whose state dict is plain
    tensors: ``weight`` (int8), ``weight_scale`` (fp32), ``weight_zero_point`` (int32),
    per tensor or per output channel, and ``bias`` (fp32) - safetensors-ready, and rebuilt
    bit-exactly (no re-quantization) on load."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._register_state_dict_hook(_drop_packed_params)

    def _save_to_state_dict(self, destination, prefix, keep_vars):
        w, b = self._weight_bias()
        destination[prefix + "weight"] = w.int_repr()
        if w.qscheme() in (torch.per_tensor_affine, torch.per_tensor_symmetric):
            destination[prefix + "weight_scale"] = torch.tensor([w.q_scale()], dtype=torch.float32)
            destination[prefix + "weight_zero_point"] = torch.tensor([w.q_zero_point()], dtype=torch.int32)
        else:
            if w.q_per_channel_axis() != 0:
                raise ValueError("per-channel int8 weights must be quantized along the output axis")
            destination[prefix + "weight_scale"] = w.q_per_channel_scales().to(torch.float32)
            destination[prefix + "weight_zero_point"] = w.q_per_channel_zero_points().to(torch.int32)
        if b is not None:
            destination[prefix + "bias"] = b.detach()

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs):
        names = ["weight", "weight_scale", "weight_zero_point"] + (["bias"] if self.bias() is not None else [])
        missing = [prefix + n for n in names if prefix + n not in state_dict]
        missing_keys.extend(missing)
        unexpected_keys.extend(k for k in state_dict if k.startswith(prefix) and "." not in k[len(prefix):] and k[len(prefix):] not in names)
        if missing:
            return
        w_int, scale, zp = (state_dict[prefix + n] for n in names[:3])
        if scale.numel() == 1:
            # the observer's scale is an fp32 value, so fp32 storage is exact
            qweight = torch._make_per_tensor_quantized_tensor(w_int.to(torch.int8), float(scale), int(zp))
        else:
            qweight = torch._make_per_channel_quantized_tensor(w_int.to(torch.int8), scale.double(), zp.long(), 0)
        bias = state_dict.get(prefix + "bias")
        for n in names:
            state_dict.pop(prefix + n)
        # hand the weights to the packed-params child in every layout its loader reads
        child = prefix + "_packed_params."
        state_dict.update({child + "weight": qweight, child + "bias": bias, child + "dtype": torch.qint8,
                           child + "_packed_params": (qweight, bias)})


def _drop_packed_params(module, state_dict, prefix, local_metadata):
    """The packed-params child stores a dtype and an opaque tuple: not in our state dict."""
    for key in [k for k in state_dict if k.startswith(prefix + "_packed_params.")]:
        del state_dict[key]


class Int8Dynamic(PostTrainingQuantized):
    """fp32 counterpart after post-training dynamic int8 quantization (torch int8 kernels; attention matmuls fp32).

    Every Linear (q/k/v/o, the SLFN, the exit heads) becomes an :class:`Int8Linear`:
    int8 weights quantized per tensor by ``quantize_dynamic``'s default observer, int8
    activations quantized per batch at run time, int32 accumulation. The attention
    products QK^T and A.V, embeddings, LayerNorms and the exit rule stay fp32.
    ``fit`` trains the fp32 network (same config and seed as ``fp32``) and quantizes it;
    ``Int8Dynamic.from_float(fp32_adapter)`` quantizes one already trained.
    """

    quantized_types = (nnqd.Linear,)

    def convert(self, float_model: nn.Module) -> nn.Module:
        torch.backends.quantized.engine = int8_engine()
        with quiet_quantization():
            q = torch.ao.quantization.quantize_dynamic(
                plain_linears(float_model), {nn.Linear}, dtype=torch.qint8, mapping={nn.Linear: Int8Linear}
            )
        return q.eval()

    def precision_notes(self) -> tuple[str, ...]:
        return (f"dynamic int8 Linear layers ({torch.backends.quantized.engine} kernels): int8 weights per tensor, "
                "activations quantized per batch at run time; attention products, embeddings and LayerNorms fp32",)
