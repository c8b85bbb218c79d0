"""Checkpoints: ``weights.safetensors`` + ``checkpoint.json`` (never pickle).

The JSON names the format, the adapter that wrote it, the package version and the
sha256 of the weights; :func:`read_checkpoint` refuses a foreign, tampered or
incompatible checkpoint with a one-line error that says what to do.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .._io import atomic_write_text, dumps_strict, sha256_file  # noqa: F401  (re-exported)
from ..errors import BeexError

FORMAT = "beexbench-checkpoint"
FORMAT_VERSION = 1
WEIGHTS = "weights.safetensors"
META = "checkpoint.json"


def write_checkpoint(directory: Path, adapter: str, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> Path:
    """Write weights then metadata (the JSON last, so a half-written checkpoint has none)."""
    from .. import __version__

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / META).unlink(missing_ok=True)
    tmp = directory / f".{WEIGHTS}.tmp"
    try:
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp))
        os.replace(tmp, directory / WEIGHTS)
    except BaseException:  # a full disk leaves no half-written temp file behind
        tmp.unlink(missing_ok=True)
        raise
    doc = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "adapter": adapter,
        "beexbench_version": __version__,
        "weights_sha256": sha256_file(directory / WEIGHTS),
        **meta,
    }
    atomic_write_text(directory / META, dumps_strict(doc, sort_keys=True))
    return directory


def read_meta(directory: Path) -> dict[str, Any]:
    path = Path(directory) / META
    if not path.is_file():
        raise BeexError(f"no checkpoint in {directory} ({META} missing): train it again with `beexbench train`")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BeexError(f"corrupt checkpoint metadata {path} ({exc.msg if hasattr(exc, 'msg') else exc}): delete the folder and retrain") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise BeexError(f"{path} is not a beexbench checkpoint: point at a folder written by `beexbench train`")
    if doc.get("format_version") != FORMAT_VERSION:
        raise BeexError(
            f"checkpoint {directory} has format version {doc.get('format_version')}, this beexbench reads "
            f"{FORMAT_VERSION}: retrain with this version or install beexbench {doc.get('beexbench_version')}"
        )
    return doc


def read_checkpoint(directory: Path, adapter: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    directory = Path(directory)
    doc = read_meta(directory)
    if doc.get("adapter") != adapter:
        raise BeexError(
            f"checkpoint {directory} was written by adapter '{doc.get('adapter')}', not '{adapter}': "
            f"load it with `{doc.get('adapter')}` or retrain"
        )
    tensors = load_verified(directory / WEIGHTS, doc.get("weights_sha256"), f"checkpoint {directory}", "weights",
                            "delete it and retrain")
    return tensors, doc


def load_verified(path: Path, sha256: str | None, what: str, label: str, remedy: str) -> dict[str, torch.Tensor]:
    """The tensors of the safetensors file ``path``, read only when its sha256 is the recorded
    one (never a file that was changed or cut short); else a one-line error ending in ``remedy``."""
    if not path.is_file() or sha256_file(path) != sha256:
        raise BeexError(f"{what} is tampered or incomplete ({label} checksum mismatch): {remedy}")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise BeexError(f"cannot read {path} ({exc}): {remedy}") from None
