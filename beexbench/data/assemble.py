"""Assembling a task from a cleaned DataFrame: labels normalized, rows without text dropped,
the 80/10/10 stratified split, the sanity checks every dataset meets before any model sees it,
the WordPiece tokenizer, ``max_len`` and the :class:`~beexbench.data.card.TaskCard`."""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from beexbench.errors import BeexError
from beexbench.progress import NULL_PROGRESS

from .card import SPLITS, TaskCard, TaskData
from .clean import clean_text
from .labels import normalize_labels
from .splits import strata_for, stratified_split, stratified_subsample
from .tokenize import choose_max_len, token_lengths, train_wordpiece

__all__ = ["MAX_LEN_PERCENTILE", "MIN_ROWS", "MIN_PER_CLASS", "MIN_LIMIT", "assemble_task", "check_splits", "apply_limit", "make_card"]

MAX_LEN_PERCENTILE = 95.0
MIN_ROWS = 20  # fewer usable rows cannot give train, val and test each a useful share
MIN_PER_CLASS = 10  # examples a class needs for the 10% val and test shares to hold one
MIN_LIMIT = -(-MIN_ROWS // len(SPLITS))  # the smallest limit (rows per split) that can give MIN_ROWS rows


def _tidy_frame(df: pd.DataFrame, label_names: Sequence[str], problem: str,
                text_fields: Sequence[str], what: str = "labels"):
    out = pd.DataFrame({f: [clean_text(t) for t in df[f]] for f in text_fields})
    labels, names = normalize_labels(df["label"].reset_index(drop=True), label_names, problem, what)
    out["label"] = labels
    return out, names


def _with_text(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows whose (cleaned) text is not empty."""
    keep = np.fromiter((bool(t) for t in frame["text"]), dtype=bool, count=len(frame))
    return frame.loc[keep].reset_index(drop=True)


def make_card(
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
    card = make_card(
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
    """Deterministic stratified subsample of each split to at most ``limit`` rows. The dataset
    rules hold for what is used: the limited splits are checked again (:func:`check_limited`)."""
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
    check_limited(parts, {k: data.split(k) for k in SPLITS}, c.label_names, c.problem, c.name, limit)
    card = make_card(
        name=c.name, description=c.description, source=c.source, sha256=c.sha256,
        license_note=c.license_note, problem=c.problem, label_names=c.label_names,
        splits=parts, max_len=c.max_len, text_fields=c.text_fields, vocab_size=c.vocab_size,
        limit=limit,
    )
    return TaskData(card=card, tokenizer=data.tokenizer, **parts)


def check_limited(parts: Mapping[str, pd.DataFrame], full: Mapping[str, pd.DataFrame], names: Sequence[str],
                  problem: str, name: str, limit: int) -> None:
    """The dataset rules for the splits a ``limit`` leaves: at least :data:`MIN_ROWS` rows in
    all, no empty split, two classes (or values) in train, and no class of a split dropped by the
    limit (a class the model never sees, or a test split missing one, is not the task)."""
    advice = f"raise --limit (at least {MIN_LIMIT}) or drop it"
    sizes = {k: len(parts[k]) for k in SPLITS}
    if sum(sizes.values()) < MIN_ROWS:
        raise BeexError(f"--limit {limit} leaves dataset {name!r} {sum(sizes.values())} rows "
                        f"({', '.join(f'{k} {n}' for k, n in sizes.items())}); a task needs at least {MIN_ROWS}: {advice}")
    try:
        check_splits(parts, names, problem, name)
    except BeexError as exc:
        raise BeexError(f"with --limit {limit}, {exc}; or {advice}") from None
    if problem != "classification":
        return
    for k in SPLITS:
        lost = sorted(set(full[k]["label"]) - set(parts[k]["label"]))
        if lost:
            raise BeexError(f"--limit {limit} drops class {names[int(lost[0])]!r} from dataset {name!r}'s {k} split "
                            f"({len(lost)} of {full[k]['label'].nunique()} classes lost): raise --limit to at least "
                            f"{full[k]['label'].nunique()}, or drop it")
