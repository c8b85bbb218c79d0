"""Packing a trained BEExformer network into a :class:`~.encoder.PackedEncoder`."""
from __future__ import annotations

from typing import Any

import torch

from .. import kernels
from .encoder import PackedEncoder, check_config
from .layers import FFN_LAYERS


def _linear_names(enc: dict[str, Any]) -> list[str]:
    names = []
    for i in range(int(enc["n_blocks"])):
        names += [f"blocks.{i}.attn.{p}" for p in "qkvo"]
        names += [f"blocks.{i}.ffn.{w}" for w in FFN_LAYERS[enc["ffn"]]]
    return names


@torch.no_grad()
def pack_encoder(state: dict[str, torch.Tensor], enc: dict[str, Any], *, vocab_size: int, max_len: int,
                 num_labels: int) -> PackedEncoder:
    """Pack a trained BEExformer network from its ``state_dict`` (EarlyExitEncoder names):
    bits = sign(W) (W >= 0), alpha = mean|W| per row computed as the float model does,
    the bias and the input shift copied; the rest copied as fp32."""
    check_config(enc)
    model = PackedEncoder(enc, vocab_size=vocab_size, max_len=max_len, num_labels=num_labels)
    names = set(_linear_names(enc))
    packed: dict[str, torch.Tensor] = {}
    fp32: dict[str, torch.Tensor] = {}
    used = set()
    for name in names:
        w = state[f"{name}.weight"].detach().float().contiguous()
        used.add(f"{name}.weight")
        packed[f"{name}.weight_packed"] = kernels.pack_rows(w).view(torch.int64).clone()
        packed[f"{name}.alpha"] = w.abs().mean(dim=-1)  # row_scale, the same op as the float model
        if f"{name}.bias" in state:
            packed[f"{name}.bias"] = state[f"{name}.bias"].detach().float().clone()
            used.add(f"{name}.bias")
        key = f"{name}.input_quantizer.shift"
        if key in state:
            packed[f"{name}.shift"] = state[key].detach().float().clone()
            used.add(key)
    for key, t in state.items():
        if key not in used:
            fp32[key] = t.detach().float().clone()
    model.load_tensors(packed, fp32)
    return model.eval()
