"""The on-disk task cache: a registered task is built once and kept under
``<cache>/tasks/<name>/v1/``::

    train.jsonl val.jsonl test.jsonl   one {"text", ["text_b",] "label"} per line
    tokenizer.json                     tokenizers.Tokenizer
    card.json                          the TaskCard
    MANIFEST.json                      sha256 of every file above + build recipe

Every load checks the manifest; a missing or corrupt file (or a changed
recipe) is reported through ``progress.log`` and the task is rebuilt.
"""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from tokenizers import Tokenizer

from beexbench.errors import BeexError

from .._io import atomic_write_bytes, sha256_file
from .assemble import assemble_task
from .card import SPLITS, TaskCard, TaskData
from .definition import CACHE_VERSION, TaskDefinition
from .sources import cache_root

__all__ = ["CACHE_FILES", "task_cache_dir", "recipe_hash", "check_cache", "read_cache", "read_card",
           "write_cache", "build_task", "load_cached", "clear_task_cache"]

CACHE_FILES = ("train.jsonl", "val.jsonl", "test.jsonl", "tokenizer.json", "card.json")


def task_cache_dir(name: str, cache_dir=None) -> Path:
    return cache_root(cache_dir) / "tasks" / name / CACHE_VERSION


def recipe_hash(spec: TaskDefinition) -> str:
    blob = json.dumps(spec.recipe(), sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()


def _frame_to_jsonl(df: pd.DataFrame, problem: str) -> bytes:
    cols = [c for c in ("text", "text_b") if c in df.columns]
    lines = []
    for row in df.itertuples(index=False):
        rec = {c: getattr(row, c) for c in cols}
        lab = row.label
        rec["label"] = float(lab) if problem == "regression" else int(lab)
        lines.append(json.dumps(rec, ensure_ascii=False))
    return ("\n".join(lines) + ("\n" if lines else "")).encode("utf-8")


def _jsonl_to_frame(path: Path, problem: str) -> pd.DataFrame:
    recs = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                recs.append(json.loads(line))
    cols = ["text"] + (["text_b"] if recs and "text_b" in recs[0] else [])
    out = pd.DataFrame({c: [r[c] for r in recs] for c in cols})
    dtype = np.float64 if problem == "regression" else np.int64
    out["label"] = np.array([r["label"] for r in recs], dtype=dtype)
    return out


def write_cache(data: TaskData, spec: TaskDefinition, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    man = folder / "MANIFEST.json"
    man.unlink(missing_ok=True)  # a half-rewritten folder must never look valid
    blobs = {f"{k}.jsonl": _frame_to_jsonl(data.split(k), spec.problem) for k in SPLITS}
    blobs["tokenizer.json"] = data.tokenizer.to_str().encode("utf-8")
    blobs["card.json"] = json.dumps(data.card.to_dict(), indent=2).encode("utf-8")
    for fname, blob in blobs.items():
        atomic_write_bytes(folder / fname, blob)
    manifest = {
        "format": 1,
        "task": spec.name,
        "recipe": spec.recipe(),
        "recipe_sha256": recipe_hash(spec),
        "files": {fname: hashlib.sha256(blob).hexdigest() for fname, blob in blobs.items()},
    }
    atomic_write_bytes(man, json.dumps(manifest, indent=2, sort_keys=True).encode("utf-8"))


def check_cache(spec: TaskDefinition, folder: Path, files: Sequence[str] = CACHE_FILES) -> str | None:
    """None when the cache is valid, else a short reason."""
    man = folder / "MANIFEST.json"
    if not folder.is_dir():
        return "not built"
    if not man.is_file():
        return "MANIFEST.json missing (interrupted build?)"
    try:
        manifest = json.loads(man.read_text(encoding="utf-8"))
        recorded = manifest["files"]
        recipe = manifest["recipe_sha256"]
    except (ValueError, KeyError, TypeError):
        return "MANIFEST.json unreadable"
    if recipe != recipe_hash(spec):
        return "task recipe changed"
    for fname in files:
        path = folder / fname
        if not path.is_file():
            return f"{fname} missing"
        if fname not in recorded or sha256_file(path) != recorded[fname]:
            return f"{fname} fails its checksum"
    return None


def read_cache(spec: TaskDefinition, folder: Path) -> TaskData:
    card = TaskCard.from_dict(json.loads((folder / "card.json").read_text(encoding="utf-8")))
    parts = {k: _jsonl_to_frame(folder / f"{k}.jsonl", card.problem) for k in SPLITS}
    tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
    return TaskData(card=card, tokenizer=tok, **parts)


def read_card(spec: TaskDefinition, cache_dir=None) -> TaskCard | None:
    """The cached card when ``card.json`` passes the manifest (nothing else is read), else None."""
    folder = task_cache_dir(spec.name, cache_dir)
    if check_cache(spec, folder, files=("card.json",)) is None:
        try:
            return TaskCard.from_dict(json.loads((folder / "card.json").read_text("utf-8")))
        except (ValueError, TypeError, OSError):
            pass
    return None


def build_task(spec: TaskDefinition, cache_dir, progress) -> TaskData:
    """Run the task's builder and assemble its splits, tokenizer and card (nothing cached)."""
    root = cache_root(cache_dir)
    with progress.task(f"Building task {spec.name}", total=None):
        df = spec.builder(root, progress)
        if spec.text_fields and "text_b" in spec.text_fields and "text_b" not in df.columns:
            raise BeexError(f"task {spec.name!r} builder returned no text_b column")
        data = assemble_task(
            df, name=spec.name, description=spec.description, source=spec.source,
            sha256=spec.sha256, license_note=spec.license_note, problem=spec.problem,
            label_names=spec.label_names, text_fields=spec.text_fields,
            vocab_size=spec.vocab_size, max_len_cap=spec.max_len_cap, progress=progress,
        )
    return data


def load_cached(spec: TaskDefinition, cache_dir, progress) -> TaskData:
    """The task from its cache, built (and cached) first when the cache is missing or invalid."""
    folder = task_cache_dir(spec.name, cache_dir)
    reason = check_cache(spec, folder)
    if reason is None:
        try:
            return read_cache(spec, folder)
        except Exception as exc:  # unreadable despite checksums (e.g. format bug)
            reason = f"unreadable ({type(exc).__name__})"
    if reason != "not built":
        progress.log(f"task cache for {spec.name} at {folder} is invalid ({reason}); rebuilding")
    data = build_task(spec, cache_dir, progress)
    try:
        write_cache(data, spec, folder)
    except OSError as exc:
        raise BeexError(f"cannot write the task cache in {folder} ({exc.strerror}); "
                        f"set BEEXBENCH_CACHE to a writable folder") from None
    return data


def clear_task_cache(name: str, cache_dir=None) -> None:
    folder = task_cache_dir(name, cache_dir)
    if folder.exists():
        shutil.rmtree(folder)
