"""A BERT-format checkpoint (``config.json`` + ``model.safetensors``, Hugging Face names) as the
shared encoder.

:func:`encoder_config_from_bert` gives the :class:`~beexbench.models.encoder.EncoderConfig` fields
of a BERT ``config.json`` (GELU FFN, the token-type table, BERT's LayerNorm eps) and
:func:`bert_sizes` its vocabulary and position-table sizes; anything the shared encoder does not
compute the same way (another activation or position embedding, a decoder, another model type) is
refused with a one-line :class:`~beexbench.errors.BeexError`, and so is any size beyond the bounds
of :mod:`.checks` (checked before anything is allocated). :func:`load_bert_weights` fills an
encoder built with those fields from the safetensors file (never a pickle): every encoder tensor
from the checkpoint, shapes checked, the position table cut to the encoder's ``max_len``; the exit
heads keep their fresh initialisation (they are task-specific), the pooler is ignored.

The mapping (``bert.`` prefix optional), ``i`` the layer::

    embeddings.word_embeddings            -> tok
    embeddings.position_embeddings        -> pos (first max_len rows)
    embeddings.token_type_embeddings      -> typ (every token is type 0)
    embeddings.LayerNorm                  -> emb_norm
    encoder.layer.i.attention.self.query  -> blocks.i.attn.q   (key -> k, value -> v)
    encoder.layer.i.attention.output.dense      -> blocks.i.attn.o
    encoder.layer.i.attention.output.LayerNorm  -> blocks.i.ln1
    encoder.layer.i.intermediate.dense    -> blocks.i.ffn.w1
    encoder.layer.i.output.dense          -> blocks.i.ffn.w2
    encoder.layer.i.output.LayerNorm      -> blocks.i.ln2

BERT is post-LN (h = LN(h + attn(h)); h = LN(h + ffn(h))) with biased projections, scores scaled
by 1/sqrt(d_head) and exact (erf) GELU, which is the shared encoder's Block with ``ffn = "gelu"``.
BERT adds a large negative number to the scores of padded keys where the encoder masks them with
-inf: the same probabilities for every row with at least one real token.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import BeexError
from .checks import check_bert_config

# parameters with no BERT counterpart that a binarized encoder adds (A3 shifts, BiT's scales):
# left as built and listed in the report
_NO_COUNTERPART = re.compile(r"(^|\.)(input_quantizer|act_scale|prob_scale)(\.|$)")

_BLOCK = {
    "attention.self.query": "attn.q",
    "attention.self.key": "attn.k",
    "attention.self.value": "attn.v",
    "attention.output.dense": "attn.o",
    "attention.output.LayerNorm": "ln1",
    "intermediate.dense": "ffn.w1",
    "output.dense": "ffn.w2",
    "output.LayerNorm": "ln2",
}
_EMBEDDINGS = {
    "embeddings.word_embeddings": "tok",
    "embeddings.position_embeddings": "pos",
    "embeddings.token_type_embeddings": "typ",
    "embeddings.LayerNorm": "emb_norm",
}
_LEAF = {"weight": "weight", "bias": "bias", "gamma": "weight", "beta": "bias"}  # old TF-converted LayerNorm names
_IGNORED = re.compile(r"^(pooler\.|embeddings\.position_ids$)")


def encoder_config_from_bert(config_json: dict[str, Any], where: str = "BERT config.json") -> dict[str, Any]:
    """The :class:`EncoderConfig` fields that make the shared encoder compute a BERT with this
    ``config.json``: sizes, ``ffn = "gelu"``, the token-type table and BERT's LayerNorm eps.
    Precision, exits and dropout are the model's own settings (BERT's 0.1 dropout is the default)."""
    check_bert_config(config_json, where)
    c = config_json
    return {"d_model": c["hidden_size"], "n_heads": c["num_attention_heads"], "n_blocks": c["num_hidden_layers"],
            "d_ff": c["intermediate_size"], "ffn": "gelu", "type_vocab_size": c["type_vocab_size"],
            "layer_norm_eps": float(c.get("layer_norm_eps", 1e-12))}


def bert_sizes(config_json: dict[str, Any], where: str = "BERT config.json") -> dict[str, int]:
    """``vocab_size`` and ``max_position_embeddings`` (the longest ``max_len`` the checkpoint allows)."""
    check_bert_config(config_json, where)
    return {"vocab_size": config_json["vocab_size"], "max_position_embeddings": config_json["max_position_embeddings"]}


@dataclass(frozen=True)
class BertLoadReport:
    """What :func:`load_bert_weights` did."""

    source: str
    prefix: str  # "bert." or ""
    filled: tuple[str, ...]  # encoder tensors set from the checkpoint
    kept: tuple[str, ...]  # encoder tensors with no BERT counterpart, left as built (exit heads, binarization extras)
    ignored: tuple[str, ...]  # checkpoint tensors deliberately unused (the pooler, position_ids)
    unknown: tuple[str, ...]  # checkpoint tensors the mapping does not know (e.g. a task head)
    position_rows: tuple[int, int]  # (rows used = max_len, rows in the checkpoint)

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self.__dict__.items()}


def _target(name: str) -> str | None:
    """Our state-dict name for a BERT tensor name (prefix stripped), or None."""
    owner, _, leaf = name.rpartition(".")
    if leaf not in _LEAF:
        return None
    if owner in _EMBEDDINGS:
        return f"{_EMBEDDINGS[owner]}.{_LEAF[leaf]}"
    m = re.fullmatch(r"encoder\.layer\.(\d+)\.(.+)", owner)
    if m and m.group(2) in _BLOCK:
        return f"blocks.{int(m.group(1))}.{_BLOCK[m.group(2)]}.{_LEAF[leaf]}"
    return None


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if path.suffix != ".safetensors":
        raise BeexError(f"{path}: BERT weights are read from a .safetensors file only (no pickled checkpoints)")
    if not path.is_file():
        raise BeexError(f"{path}: no such file")
    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise BeexError(f"{path}: not a readable safetensors file ({exc})") from None


@torch.no_grad()
def load_bert_weights(encoder: nn.Module, safetensors_path: str | Path, *, ffn: bool = True) -> BertLoadReport:
    """Fill ``encoder`` (an :class:`EarlyExitEncoder` built from :func:`encoder_config_from_bert`)
    with a BERT checkpoint's tensors, strictly: every encoder tensor must come from the checkpoint
    (except the exit heads and the parameters a binarized encoder adds), every shape must match
    (the position table may be longer than ``max_len``: its first ``max_len`` rows are used).
    ``ffn=False``: the encoder has an FFN of its own kind (an SLFN ablation): the checkpoint's FFN
    tensors are ignored and the encoder's keep their initialisation.
    Nothing is changed unless everything matches."""
    path = Path(safetensors_path)
    where = str(path)
    cfg = getattr(encoder, "cfg", None)
    if cfg is None or not hasattr(encoder, "blocks"):
        raise BeexError(f"{where}: BERT weights load into the shared encoder (EarlyExitEncoder), not {type(encoder).__name__}")
    if ffn and cfg.ffn != "gelu":
        raise BeexError(f"{where}: the encoder's ffn is {cfg.ffn!r}; BERT's FFN is 'gelu' (set encoder.ffn = \"gelu\")")
    tensors = _read_safetensors(path)
    prefix = "bert." if any(k.startswith("bert.") for k in tensors) else ""
    ours = encoder.state_dict()
    values: dict[str, torch.Tensor] = {}
    ignored, unknown, sources = [], [], {}
    position_rows = (0, 0)
    for name in sorted(tensors):
        if prefix:
            short = name[len(prefix):] if name.startswith(prefix) else None  # e.g. a pretraining head
        else:
            short = name
        target = _target(short) if short is not None else None
        if target is not None and not ffn and ".ffn." in target:
            ignored.append(name)
            continue
        if target is None:
            (ignored if short is not None and _IGNORED.match(short) else unknown).append(name)
            continue
        if target not in ours:
            raise BeexError(f"{where}: tensor '{name}' has no place in this encoder (no '{target}'): "
                            + ("build it with type_vocab_size from the checkpoint's config.json"
                               if target.startswith("typ.") else "its config does not match the checkpoint's config.json"))
        if target in sources:
            raise BeexError(f"{where}: tensors '{sources[target]}' and '{name}' both map to '{target}'")
        sources[target] = name
        t, want = tensors[name], ours[target].shape
        rows = None
        if target == "pos.weight" and t.dim() == 2 and t.shape[1] == want[1] and t.shape[0] >= want[0]:
            rows = (int(want[0]), int(t.shape[0]))
            t = t[: want[0]]
        if target == "pos.weight" and rows is None and t.dim() == 2 and t.shape[0] < want[0]:
            raise BeexError(f"{where}: the checkpoint has {t.shape[0]} positions, the encoder's max_len is {want[0]}: "
                            f"use a max_len of at most {t.shape[0]}")
        if tuple(t.shape) != tuple(want):
            raise BeexError(f"{where}: tensor '{name}' has shape {tuple(tensors[name].shape)}, the encoder's "
                            f"'{target}' is {tuple(want)}: the checkpoint and the encoder's config differ")
        if not t.is_floating_point():
            raise BeexError(f"{where}: tensor '{name}' is {t.dtype}, not a float tensor")
        values[target] = t
        if rows is not None:
            position_rows = rows
    kept = [k for k in ours if k not in values
            and (k.startswith("heads.") or _NO_COUNTERPART.search(k) or (not ffn and ".ffn." in k))]
    missing = [k for k in ours if k not in values and k not in kept]
    if missing:
        raise BeexError(f"{where}: the checkpoint has no tensor for {len(missing)} encoder tensor(s) "
                        f"({', '.join(missing[:4])}{', ...' if len(missing) > 4 else ''}): not a complete BERT of this config")
    named = dict(encoder.named_parameters()) | dict(encoder.named_buffers())
    for target, t in values.items():
        named[target].copy_(t.to(named[target].dtype))
    return BertLoadReport(source=where, prefix=prefix, filled=tuple(sorted(values)), kept=tuple(kept),
                          ignored=tuple(ignored), unknown=tuple(unknown), position_rows=position_rows)
