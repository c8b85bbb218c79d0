"""The packed engine's deployable files (a checkpoint folder)::

    packed.safetensors   the token embedding as inference reads it: tok.codes and (but for
                         fp32 rows) tok.scale [vocab], in the format the header's "embedding"
                         names (:mod:`.embedding`: fp32, int8, int4 or 1-bit rows); per
                         binarized layer: weight_packed (int64 view of uint64 words,
                         [out, ceil(in/64)]), alpha [out], bias [out], shift [in]
    weights.safetensors  the fp32 rest: position embedding, LayerNorms, exit heads
    checkpoint.json      the header: beexbench checkpoint envelope (adapter, version,
                         sha256 of weights.safetensors) + "packed": format, version, bit
                         layout, tensor layout, the embedding format, sha256 of
                         packed.safetensors, the architecture (every tensor's shape follows
                         from it) and the exit rule

Both safetensors files hold one flat tensor per dtype (``TENSOR_LAYOUT``): the named tensors
above, in sorted-name order, each flattened, concatenated; their shapes follow from the
architecture in the header. (One safetensors entry per tensor cost ~20 KB of JSON headers for
the default model, 9% of its A5 artifact; version 1's per-layer shapes in checkpoint.json
another ~7 KB.) Reading checks every blob's dtype and exact length against the architecture.

A model with BERT's token-type table (``type_vocab_size``) stores no such table: every token is
type 0 and its row 0 is added into ``pos.weight`` when packing; the header's "embedding" says so
("token_type_folded": true, present only then, so other models' files are unchanged and need no
new version; a beexbench before this option refuses such a file by its architecture).
``layer_norm_eps`` is part of the architecture (the encoder settings) and changes no tensor.

Version 2 added the compact token embedding and the grouped tensors (version 1 stored the
fp32 table in weights.safetensors, one entry per tensor, and a per-layer shape table): a version-1 file is refused with a
message to re-derive it.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from ..errors import BeexError
from .embedding import FORMATS, SCALE_DTYPE
from .encoder import PackedEncoder

PACKED_FORMAT = "beexbench-packed"
PACKED_VERSION = 2  # 2: the token embedding stored as codes + per-row scales (header "embedding")
PACKED_FILE = "packed.safetensors"
BIT_LAYOUT = ("element k of a row is bit k % 64 of word k // 64 (LSB first); bit = 1 where "
              "x + shift >= 0 (sign(0) = +1); padding bits 0; words are uint64 stored as int64 views")
EMBEDDING_LAYOUT = {
    32: "tok.codes float32 [vocab, d]; no scale",
    8: "tok.codes int8 [vocab, d], symmetric per row; value = code * tok.scale[row] (float16 scale = max|row| / 127)",
    4: ("tok.codes uint8 [vocab, ceil(d/2)], element j in byte j // 2, low nibble for even j; "
        "value = (nibble - 8) * tok.scale[row] (nibble 1..15, float16 scale = max|row| / 7)"),
    1: ("tok.codes int64 [vocab, ceil(d/64)] (uint64 words), element j is bit j % 64 of word j // 64; "
        "value = (+1 if bit else -1) * tok.scale[row] (scale = mean|row|: A5's alpha_row * sign(E))"),
}


TENSOR_LAYOUT = ("each file holds one flat tensor per dtype, named by the dtype (float32, int64, int8, uint8): the "
                 "file's named tensors in sorted-name order, each flattened (row-major), concatenated; shapes from "
                 "the architecture")


def group(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """One flat tensor per dtype: ``tensors`` in sorted-name order, flattened, concatenated."""
    parts: dict[str, list[torch.Tensor]] = {}
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous().cpu()
        parts.setdefault(str(t.dtype).removeprefix("torch."), []).append(t.reshape(-1))
    return {key: torch.cat(ts) for key, ts in parts.items()}


def ungroup(flat: dict[str, torch.Tensor], like: dict[str, torch.Tensor], where: str) -> dict[str, torch.Tensor]:
    """The named tensors of ``like`` (dtypes and shapes) cut from :func:`group`'s blobs; every
    blob must be used exactly (a BeexError otherwise)."""
    out: dict[str, torch.Tensor] = {}
    used: dict[str, int] = {}
    for name in sorted(like):
        want = like[name]
        key = str(want.dtype).removeprefix("torch.")
        blob, start, n = flat.get(key), used.get(key, 0), want.numel()
        if blob is None or blob.dtype != want.dtype or blob.dim() != 1 or start + n > blob.numel():
            raise BeexError(f"{where}: its tensors do not match the architecture in its header ({name}): re-derive it")
        out[name] = blob[start:start + n].view(want.shape).clone()
        used[key] = start + n
    extra = sorted(k for k, blob in flat.items() if used.get(k, 0) != blob.numel())
    if extra:
        raise BeexError(f"{where}: its tensors do not match the architecture in its header ({extra[0]} has "
                        f"{flat[extra[0]].numel()} elements, {used.get(extra[0], 0)} expected): re-derive it")
    return out


def embedding_header(model: PackedEncoder) -> dict[str, Any]:
    bits = model.tok.bits
    out = {"bits": bits, "rows": model.tok.num_embeddings, "dim": model.tok.dim, "layout": EMBEDDING_LAYOUT[bits],
           "scale": f"{str(SCALE_DTYPE[bits]).removeprefix('torch.')} per row" if bits != 32 else None, "position": "fp32 (weights.safetensors: pos.weight)",
           # the rows decode to the table the trained float model reads (else: rounded, accuracy measured)
           "lossless": bits == 32 or (bits == 1 and bool(model.enc.get("binary_embedding")))}
    if model.token_type_folded:
        out["position"] += " + token-type row 0 (every token is type 0), added at packing"
        out["token_type_folded"] = True
    return out


def write_packed(directory: Path, adapter: str, model: PackedEncoder, meta: dict[str, Any]) -> Path:
    """Write ``packed.safetensors`` + ``weights.safetensors`` + ``checkpoint.json`` (last)."""
    from .._io import sha256_file
    from ..adapters.checkpoint import META, write_checkpoint

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / META).unlink(missing_ok=True)
    tmp = directory / f".{PACKED_FILE}.tmp"
    tensors = group(model.packed_tensors())
    save_file(tensors, str(tmp), metadata={"format": PACKED_FORMAT, "version": str(PACKED_VERSION)})
    os.replace(tmp, directory / PACKED_FILE)
    header = {
        "format": PACKED_FORMAT,
        "version": PACKED_VERSION,
        "file": PACKED_FILE,
        "sha256": sha256_file(directory / PACKED_FILE),
        "bit_layout": BIT_LAYOUT,
        "tensor_layout": TENSOR_LAYOUT,
        "embedding": embedding_header(model),
        "architecture": {"encoder": model.enc, "vocab_size": model.tok.num_embeddings, "max_len": model.max_len,
                         "num_labels": model.num_labels},
    }
    return write_checkpoint(directory, adapter, group(model.fp32_tensors()), {**json.loads(json.dumps(meta)), "packed": header})


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
    bits = (header.get("embedding") or {}).get("bits")
    if bits not in FORMATS:
        raise BeexError(f"packed checkpoint {directory} has a bad embedding header (bits {bits!r}): re-derive it")
    try:
        model = PackedEncoder(arch["encoder"], vocab_size=int(arch["vocab_size"]), max_len=int(arch["max_len"]),
                              num_labels=int(arch["num_labels"]), embedding_bits=bits)
    except (KeyError, TypeError, ValueError) as exc:
        raise BeexError(f"packed checkpoint {directory} has a bad architecture header ({exc}): re-derive it") from None
    where = f"packed checkpoint {directory}"
    if bool((header.get("embedding") or {}).get("token_type_folded")) != model.token_type_folded:
        # pos.weight means pos + type row 0 exactly when the architecture has a token-type table
        raise BeexError(f"{where}: its header's token_type_folded does not match its architecture "
                        f"(type_vocab_size {arch['encoder'].get('type_vocab_size')!r}): re-derive it")
    model.load_tensors(ungroup(packed, model.packed_tensors(), f"{where} ({PACKED_FILE})"),
                       ungroup(fp32, model.fp32_tensors(), where))
    return model.eval(), doc
