"""Packing a trained BEExformer network into a :class:`~.encoder.PackedEncoder`."""
from __future__ import annotations

from typing import Any

import torch

from .. import kernels
from ..errors import BeexError
from .embedding import SCALE_DTYPE, binary_table, decode_rows, encode_rows
from .encoder import PackedEncoder, check_config, embedding_bits_for, folds_token_type
from .layers import FFN_LAYERS


def _linear_names(enc: dict[str, Any]) -> list[str]:
    names = []
    for i in range(int(enc["n_blocks"])):
        names += [f"blocks.{i}.attn.{p}" for p in "qkvo"]
        names += [f"blocks.{i}.ffn.{w}" for w in FFN_LAYERS[enc["ffn"]]]
    return names


@torch.no_grad()
def token_rows(table: torch.Tensor, enc: dict[str, Any], bits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(codes, scale)`` of the trained token table in format ``bits``. With A5
    (``binary_embedding``) the table the float model reads is ``alpha_row * sign(E)``: that is
    what is encoded, and its 1-bit rows are checked to decode to it exactly (lossless)."""
    table = table.detach().float()
    if not enc.get("binary_embedding"):
        return encode_rows(table, bits)
    deployed = binary_table(table)
    codes, scale = encode_rows(table if bits == 1 else deployed, bits)
    if bits == 1 and not torch.equal(decode_rows(codes, scale, 1, table.shape[1]), deployed):
        raise BeexError("the 1-bit token rows do not reproduce the A5 table alpha_row * sign(E) exactly")
    return codes, scale


@torch.no_grad()
def fold_token_type(pos: torch.Tensor, typ: torch.Tensor) -> torch.Tensor:
    """The position table with BERT's token-type row 0 added in: every token is type 0, and the
    float model computes ``tok + (pos + typ[0])`` (EarlyExitEncoder.embed adds the type row to
    the position rows first), so this is that same fp32 add done once, and the engine's
    ``tok + pos`` gives its embedding bit for bit with no third lookup per token."""
    return (pos.detach().float() + typ.detach().float()[0]).contiguous()


@torch.no_grad()
def pack_encoder(state: dict[str, torch.Tensor], enc: dict[str, Any], *, vocab_size: int, max_len: int,
                 num_labels: int, embedding_bits: int | None = None) -> PackedEncoder:
    """Pack a trained BEExformer network from its ``state_dict`` (EarlyExitEncoder names):
    bits = sign(W) (W >= 0), alpha = mean|W| per row computed as the float model does,
    the bias and the input shift copied; the token table as ``embedding_bits`` rows
    (:func:`token_rows`; default 1 bit with A5, else int8); a token-type table's row 0 folded
    into the position table (:func:`fold_token_type`); the rest copied as fp32."""
    check_config(enc)
    bits = embedding_bits_for(enc, embedding_bits)
    model = PackedEncoder(enc, vocab_size=vocab_size, max_len=max_len, num_labels=num_labels, embedding_bits=bits)
    names = set(_linear_names(enc))
    packed: dict[str, torch.Tensor] = {}
    fp32: dict[str, torch.Tensor] = {}
    codes, scale = token_rows(state["tok.weight"], enc, bits)
    packed["tok.codes"] = codes
    if bits != 32:
        packed["tok.scale"] = scale.to(SCALE_DTYPE[bits])  # as stored (exact: chosen in that dtype)
    used = {"tok.weight"}
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
    if folds_token_type(enc):
        if "typ.weight" not in state:
            raise BeexError(f"the encoder has type_vocab_size {enc['type_vocab_size']} but the network has no typ.weight")
        fp32["pos.weight"] = fold_token_type(state["pos.weight"], state["typ.weight"])
        used |= {"pos.weight", "typ.weight"}
    for key, t in state.items():
        if key not in used:
            fp32[key] = t.detach().float().clone()
    model.load_tensors(packed, fp32)
    return model.eval()
