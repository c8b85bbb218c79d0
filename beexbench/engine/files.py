"""The packed engine's deployable files (a checkpoint folder)::

    packed.safetensors   per binarized layer: weight_packed (int64 view of uint64 words,
                         [out, ceil(in/64)]), alpha [out], bias [out], shift [in]
    weights.safetensors  the fp32 rest: embeddings, LayerNorms, exit heads
    checkpoint.json      the header: beexbench checkpoint envelope (adapter, version,
                         sha256 of weights.safetensors) + "packed": format, version, bit
                         layout, sha256 of packed.safetensors, every layer's shape, the
                         architecture and the exit rule
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from safetensors.torch import save_file

from ..errors import BeexError
from .encoder import PackedEncoder

PACKED_FORMAT = "beexbench-packed"
PACKED_VERSION = 1
PACKED_FILE = "packed.safetensors"
BIT_LAYOUT = ("element k of a row is bit k % 64 of word k // 64 (LSB first); bit = 1 where "
              "x + shift >= 0 (sign(0) = +1); padding bits 0; words are uint64 stored as int64 views")


def write_packed(directory: Path, adapter: str, model: PackedEncoder, meta: dict[str, Any]) -> Path:
    """Write ``packed.safetensors`` + ``weights.safetensors`` + ``checkpoint.json`` (last)."""
    from .._io import sha256_file
    from ..adapters.checkpoint import META, write_checkpoint

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / META).unlink(missing_ok=True)
    tmp = directory / f".{PACKED_FILE}.tmp"
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.packed_tensors().items()}
    save_file(tensors, str(tmp), metadata={"format": PACKED_FORMAT, "version": str(PACKED_VERSION)})
    os.replace(tmp, directory / PACKED_FILE)
    header = {
        "format": PACKED_FORMAT,
        "version": PACKED_VERSION,
        "file": PACKED_FILE,
        "sha256": sha256_file(directory / PACKED_FILE),
        "bit_layout": BIT_LAYOUT,
        "architecture": {"encoder": model.enc, "vocab_size": model.tok.num_embeddings, "max_len": model.max_len,
                         "num_labels": model.num_labels},
        "layers": {n: {"in": m.in_features, "out": m.out_features, "words": m.weight_packed.shape[1],
                       "bias": m.bias is not None, "shift": m.shift is not None}
                   for n, m in model.packed_linears().items()},
    }
    return write_checkpoint(directory, adapter, model.fp32_tensors(), {**json.loads(json.dumps(meta)), "packed": header})


def read_packed(directory: Path, adapter: str) -> tuple[PackedEncoder, dict[str, Any]]:
    """Read and verify a packed checkpoint: adapter name, both checksums, the format
    header and every tensor's shape; refuse anything else with a BeexError."""
    from ..adapters.checkpoint import load_verified, read_checkpoint

    directory = Path(directory)
    fp32, doc = read_checkpoint(directory, adapter)
    header = doc.get("packed")
    if not isinstance(header, dict) or header.get("format") != PACKED_FORMAT:
        raise BeexError(f"checkpoint {directory} has no packed-format header: it is not a {adapter} checkpoint; re-derive it")
    if header.get("version") != PACKED_VERSION:
        raise BeexError(f"packed checkpoint {directory} has format version {header.get('version')}, this beexbench "
                        f"reads {PACKED_VERSION}: re-derive it from the trained beexformer")
    packed = load_verified(directory / PACKED_FILE, header.get("sha256"), f"packed checkpoint {directory}", PACKED_FILE,
                           "delete it and re-derive")
    arch = header.get("architecture") or {}
    try:
        model = PackedEncoder(arch["encoder"], vocab_size=int(arch["vocab_size"]), max_len=int(arch["max_len"]),
                              num_labels=int(arch["num_labels"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise BeexError(f"packed checkpoint {directory} has a bad architecture header ({exc}): re-derive it") from None
    layers = header.get("layers") or {}
    for name, lin in model.packed_linears().items():
        info = layers.get(name)
        if not info or info.get("in") != lin.in_features or info.get("out") != lin.out_features:
            raise BeexError(f"packed checkpoint {directory}: layer {name} is missing or has another shape in the header")
    model.load_tensors(packed, fp32)
    return model.eval(), doc
