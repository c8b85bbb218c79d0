"""Model size: bits per component from the declared precision, and bytes on disk.

Like larq's ``summary()``, memory is bit-width x count, read from
``adapter.precision().params``; and, because users found that figure did not match the
file (larq compute-engine#669), the size of the deployable artifact on disk is reported
beside it when its files are given.

Components (bits):

* ``binary_weights`` 1 bit per element of every 1-bit parameter;
* ``scales``         one 32-bit alpha per output row of every 1-bit weight (``row_scale``);
* ``int8``           8 bits per element of every int8 parameter (``int4`` ... likewise);
* ``int8_scales``    the scale / zero-point tensors declared beside an int8 weight
                     (``weight_scale``, ``weight_zero_point``, ``scales_and_zeros``) at their
                     declared bits; when none is declared, a 32-bit scale and a 32-bit zero
                     point per quantization group (per tensor or per channel);
* ``fp32``           everything else (biases, LayerNorms, shifts, heads, fp32 embeddings,
                     buffers), at its declared bits (32 unless declared otherwise);
* ``embeddings``     the bits of embedding tables (with their scales); these bits are
                     also inside the components above, so they are not added to the total.

Beside the model's own bits, every model's tokenizer is counted (:func:`tokenizer_files`): the
file(s) the task's tokenizer is loaded from to turn text into ids - the task's trained WordPiece
``tokenizer.json`` (kept content-addressed by :func:`keep_tokenizer` when the runner encodes a
task), or a pretrained backbone's ``vocab.txt`` (and its ``tokenizer_config.json``). Two labelled
totals: *encoder only* (``total_bits_without_embeddings``: no token table, no tokenizer) and
*whole artifact incl. tokenizer* (``deployable_bytes`` on disk, ``total_bits_with_tokenizer``
in bits, the tokenizer at 8 bits per stored byte).
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from beexbench._io import atomic_write_bytes, sha256_file
from beexbench.errors import BeexError
from beexbench.results.costs import Size

SCALE_BITS = 32
COMPONENTS = ("binary_weights", "scales", "int8", "int8_scales", "fp32")
# names of the scale / zero-point tensors stored beside a low-bit integer weight
SCALE_NAMES = ("weight_scale", "weight_zero_point", "scales_and_zeros", "scale", "zero_point", "scales", "zeros")


SizeRecord = Size  # the profiler's record is the result's own section
TOKENIZER_DIR = "tokenizers"  # under the cache root: <sha256 of the tokenizer's JSON>.json


def _tokenizer_store() -> Path:
    from beexbench.data.sources import cache_root

    return cache_root() / TOKENIZER_DIR


def keep_tokenizer(tokenizer) -> Path:
    """Keep ``tokenizer`` (a ``tokenizers.Tokenizer``) as the file a deployment loads it from,
    named by the sha256 of its JSON (the ``TaskSpec.tokenizer_sha256`` of models encoded with it),
    so the size profiler finds every model's tokenizer; written once, atomically."""
    blob = tokenizer.to_str().encode("utf-8")
    path = _tokenizer_store() / f"{hashlib.sha256(blob).hexdigest()}.json"
    if not path.is_file() or os.path.getsize(path) != len(blob):
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, blob)
    return path


def _backbone_name(adapter) -> str | None:
    config = getattr(adapter, "config", None)
    backbone = config.get("backbone") if isinstance(config, dict) else None
    name = backbone.get("name") if isinstance(backbone, dict) else None
    return name if isinstance(name, str) and name and name != "scratch" else None


def tokenizer_files(adapter) -> tuple[list[Path] | None, str]:
    """The files ``adapter``'s tokenizer is loaded from, and a note saying what they are. None
    (with the reason) only when its task spec names no tokenizer (a model built outside the
    runner); a named tokenizer whose file is missing is an error, never a zero."""
    name = _backbone_name(adapter)
    if name is not None:
        from beexbench.backbones.sources import resolve_backbone

        files = resolve_backbone(name)
        extra = files.directory / "tokenizer_config.json"
        paths = [Path(files.vocab)] + ([extra] if extra.is_file() else [])
        return paths, f"tokenizer: the {name} backbone's vocabulary ({', '.join(p.name for p in paths)})"
    spec = getattr(adapter, "spec", None)
    sha = getattr(spec, "tokenizer_sha256", "") or ""
    if not sha:
        return None, "tokenizer not counted: the model's task spec names no tokenizer (built outside the runner)"
    path = _tokenizer_store() / f"{sha}.json"
    if not path.is_file() or sha256_file(path) != sha:
        raise BeexError(f"the tokenizer of task '{spec.task}' (sha256 {sha[:12]}) is not in {path.parent}: "
                        "measure the model through `beexbench run`, which keeps it there")
    return [path], "tokenizer: the task's WordPiece tokenizer.json (its vocabulary and normalization)"


def _tensors(adapter, names) -> tuple[nn.Module | None, dict[str, Any]]:
    """Name -> tensor for the declared names: parameters, buffers and state-dict tensors of
    the module, a quantized module's ``weight()``, or (for packed low-bit weights declared
    by their logical name) an empty ``[out_features, in_features]`` meta tensor."""
    try:
        module = adapter.module()
    except NotImplementedError:
        return None, {}
    found: dict[str, Any] = {k: v for k, v in module.state_dict(keep_vars=True).items() if isinstance(v, torch.Tensor)}
    found.update(dict(module.named_parameters()))
    found.update(dict(module.named_buffers()))
    for name in names:
        if name in found:
            continue
        owner_name, _, attr = name.rpartition(".")
        try:
            owner = module.get_submodule(owner_name) if owner_name else module
        except AttributeError:
            continue
        obj = getattr(owner, attr, None)
        if callable(obj) and not isinstance(obj, torch.Tensor):  # quantized modules: weight()
            try:
                obj = obj()
            except TypeError:
                obj = None
        if isinstance(obj, torch.Tensor):
            found[name] = obj
        elif attr == "weight" and hasattr(owner, "in_features") and hasattr(owner, "out_features"):
            found[name] = torch.empty(owner.out_features, owner.in_features, device="meta")
    return module, found


def _groups(t: torch.Tensor) -> int:
    """Quantization groups of a quantized tensor (1 per tensor, or one per channel)."""
    if t.is_quantized and t.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric,
                                          torch.per_channel_affine_float_qparams):
        return int(t.q_per_channel_scales().numel())
    return 1


def measure_size(adapter, deployable_files: list[Path] | None = None) -> SizeRecord:
    """Bits per component of ``adapter`` (from ``adapter.precision().params``) and, when
    ``deployable_files`` are given, their total size on disk."""
    precision = adapter.precision()
    declared = dict(precision.params)
    module, tensors = _tensors(adapter, declared)
    notes = [
        f"1-bit weights: 1 bit per element + one {SCALE_BITS}-bit alpha per output row",
        "low-bit integer weights: their bits per element + their declared scale/zero-point tensors",
        *precision.notes,
    ]
    # undeclared buffers count too, at their storage width
    buffers = dict(module.named_buffers()) if module is not None else {}
    for name, t in tensors.items():
        if name not in declared and name in buffers and t.is_floating_point():
            declared[name] = t.element_size() * 8
            notes.append(f"buffer {name} counted at {declared[name]} bits")

    embeddings = set()
    if module is not None:
        for mname, mod in module.named_modules():
            if isinstance(mod, nn.Embedding):  # the table, and a packed table's per-row scale
                prefix = f"{mname}." if mname else ""
                embeddings.update({prefix + "weight", prefix + "scale"})
    else:
        notes.append("the adapter exposes no module: embedding tables unknown, counted as ordinary weights")

    # low-bit integer weights and the scale / zero-point tensors declared beside them
    owners = {name.rpartition(".")[0]: b for name, b in declared.items()
              if 1 < b < 32 and name.rpartition(".")[2] not in SCALE_NAMES}
    explicit = {n.rpartition(".")[0] for n in declared if n.rpartition(".")[2] in SCALE_NAMES} & set(owners)

    bits = {c: 0 for c in COMPONENTS}
    bits["embeddings"] = 0
    params = 0
    for name, b in declared.items():
        t = tensors.get(name)
        if t is None:
            raise BeexError(f"declared parameter '{name}' ({b} bits) is not found on the model; cannot size it")
        n = int(t.numel())
        params += n
        owner, _, leaf = name.rpartition(".")
        if b == 1:
            rows = int(t.shape[0]) if t.dim() else 1
            part = {"binary_weights": n, "scales": SCALE_BITS * rows}
        elif owner in owners and leaf in SCALE_NAMES:  # at their declared width (fp16 or fp32)
            part = {f"int{owners[owner]}_scales": b * n}
        elif 1 < b < 32:
            part = {f"int{b}": b * n}
            if owner not in explicit and t.dim() > 1:
                part[f"int{b}_scales"] = 2 * SCALE_BITS * _groups(t)
                notes.append(f"{name}: no scale declared; counted {_groups(t)} x (32-bit scale + 32-bit zero point)")
        elif b == 32:
            part = {"fp32": 32 * n}
        else:
            part = {f"bits{b}": b * n}
        for c, v in part.items():
            bits[c] = bits.get(c, 0) + v
        if name in embeddings:
            bits["embeddings"] += sum(part.values())
    total = sum(v for c, v in bits.items() if c != "embeddings")
    disk_bytes, files = None, ()
    if deployable_files is not None:
        paths = [Path(p) for p in deployable_files]
        missing = [str(p) for p in paths if not p.is_file()]
        if missing:
            raise BeexError(f"deployable files not found: {', '.join(missing)}")
        disk_bytes = sum(os.path.getsize(p) for p in paths)
        files = tuple(str(p) for p in paths)
    tok_paths, tok_note = tokenizer_files(adapter)
    notes.append(tok_note)
    tok_bytes = sum(os.path.getsize(p) for p in tok_paths) if tok_paths is not None else None
    return SizeRecord(
        params=params,
        bits=bits,
        total_bits=total,
        total_bits_without_embeddings=total - bits["embeddings"],
        total_bytes=total / 8,
        disk_bytes=disk_bytes,
        disk_files=files,
        notes=tuple(notes),
        tokenizer_bytes=tok_bytes,
        tokenizer_files=None if tok_paths is None else tuple(str(p) for p in tok_paths),
        total_bits_with_tokenizer=None if tok_bytes is None else total + 8 * tok_bytes,
        deployable_bytes=None if tok_bytes is None or disk_bytes is None else disk_bytes + tok_bytes,
    )


def size_ratio(model: SizeRecord, reference: SizeRecord) -> dict:
    """``*_ratio`` = model / reference (fraction of the reference's size);
    ``*_compression`` = reference / model ("x times smaller"). Disk figures are None
    unless both records have ``disk_bytes``."""

    def div(a, b):
        return None if a is None or b is None or b == 0 else a / b

    disk = (model.disk_bytes, reference.disk_bytes)
    return {
        "bits_ratio": div(model.total_bits, reference.total_bits),
        "bits_ratio_without_embeddings": div(model.total_bits_without_embeddings, reference.total_bits_without_embeddings),
        "disk_ratio": div(*disk),
        "bits_compression": div(reference.total_bits, model.total_bits),
        "bits_compression_without_embeddings": div(reference.total_bits_without_embeddings, model.total_bits_without_embeddings),
        "disk_compression": div(disk[1], disk[0]),
    }
