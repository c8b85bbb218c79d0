"""User datasets: local CSV / JSONL / Parquet files and Hugging Face datasets.

Both return a :class:`~beexbench.data.card.TaskData` made the same way as
catalog tasks: whitespace collapsed, empty texts dropped, labels mapped to
class indices (strings in sorted order unless ``label_names`` is given),
80/10/10 stratified split with seed 1234, WordPiece tokenizer trained on the
training split, ``max_len`` = 95th percentile of train token lengths rounded
up to a multiple of 8 (cap 256).  Nothing here is cached.

Dataset spec strings (accepted by :func:`beexbench.data.load_task` and the CLI)::

    csv:PATH?text=COL&label=COL[&text_b=COL][&name=NAME][&problem=regression][&sep=;][&missing=drop]
    jsonl:PATH?text=COL&label=COL...
    parquet:PATH?text=COL&label=COL...
    PATH.csv?text=COL&label=COL        (format taken from the extension)
    hf:DATASET[/CONFIG]                e.g. hf:glue/sst2, hf:glue/mnli
    hf:OWNER/DATASET[:CONFIG]          e.g. hf:stanfordnlp/imdb, hf:nyu-mll/glue:rte
    hf:...?text=COL&label=COL[&text_b=COL]   for datasets without a known column layout

``text`` defaults to ``text`` and ``label`` to ``label`` when omitted.  For
``hf:``, a ``DATASET/CONFIG`` form is only read as a config for the
config-style collections ``glue`` and ``super_glue``; otherwise use ``:CONFIG``
or ``?config=CONFIG``.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence
from urllib.parse import parse_qsl

import pandas as pd

from beexbench._io import sha256_file
from beexbench.errors import BeexError
from beexbench.progress import NULL_PROGRESS

from .assemble import assemble_task
from .card import TaskData
from .clean import dedupe as _dedupe
from .clean import require_columns as _require_columns
from .hub import CONFIG_COLLECTIONS as _CONFIG_COLLECTIONS
from .hub import GLUE_COLUMNS, load_hf_dataset
from .labels import describe_missing, missing_label_mask
from .options import HF_KEYS, LOCAL_KEYS, TRUE_WORDS, checked_options

__all__ = [
    "load_local_dataset",
    "load_hf_dataset",
    "is_dataset_spec",
    "parse_dataset_spec",
    "load_dataset_spec",
    "GLUE_COLUMNS",
]

_FORMATS = {".csv": "csv", ".tsv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl",
            ".json": "jsonl", ".parquet": "parquet", ".pq": "parquet"}
_SCHEMES = ("csv", "jsonl", "parquet", "hf", "local", "file")


# --------------------------------------------------------------------------- #
# Local files
# --------------------------------------------------------------------------- #
def _read_table(path: Path, fmt: str, sep: str | None) -> pd.DataFrame:
    try:
        if fmt == "csv":
            if sep is None:
                sep = "\t" if path.suffix.lower() == ".tsv" else ","
            return pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, na_values=[""])
        if fmt == "jsonl":
            rows = []
            with open(path, encoding="utf-8-sig") as f:  # a byte-order mark is not part of the first row
                for lineno, line in enumerate(f, 1):
                    if not line.strip():
                        continue
                    try:
                        rows.append(json.loads(line))
                    except ValueError:
                        raise BeexError(f"{path}:{lineno} is not valid JSON "
                                        f"(expected one JSON object per line)") from None
                    if not isinstance(rows[-1], dict):
                        raise BeexError(f"{path}:{lineno} is not a JSON object")
            return pd.DataFrame.from_records(rows)
        if fmt == "parquet":
            try:
                import pyarrow  # noqa: F401
            except ImportError:
                try:
                    import fastparquet  # noqa: F401
                except ImportError:
                    raise BeexError(f"reading {path.name} needs a Parquet engine: "
                                    f"pip install pyarrow") from None
            return pd.read_parquet(path)
    except BeexError:
        raise
    except UnicodeDecodeError:
        raise BeexError(f"{path} is not UTF-8 text; re-save it as UTF-8") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as exc:
        raise BeexError(f"cannot parse {path} as {fmt}: {str(exc).splitlines()[0]}") from None
    raise BeexError(f"unsupported file format {fmt!r}; use .csv, .jsonl or .parquet")


def _missing_labels(frame: pd.DataFrame, missing: str, where: str, progress) -> pd.DataFrame:
    """Refuse rows without a label, or drop them (logged) when ``missing="drop"``."""
    mask = missing_label_mask(frame["label"])
    if not mask.any():
        return frame
    if missing != "drop":
        raise BeexError(f"{describe_missing(mask, frame['label'], where)}; fill in or delete those rows, "
                        f"or add &missing=drop to the dataset spec to skip them")
    progress.log(f"{where}: dropped {int(mask.sum())} rows without a label")
    return frame[~mask].reset_index(drop=True)


def load_local_dataset(
    path: str | os.PathLike,
    text_column: str = "text",
    label_column: str = "label",
    text_b_column: str | None = None,
    name: str | None = None,
    *,
    format: str | None = None,
    problem: str | None = None,
    label_names: Sequence[str] | None = None,
    vocab_size: int = 8000,
    max_len_cap: int = 256,
    sep: str | None = None,
    dedupe: bool = False,
    missing: str = "refuse",
    progress=NULL_PROGRESS,
) -> TaskData:
    """Load a labelled .csv/.tsv/.jsonl/.parquet file as a task.

    ``problem`` defaults to classification (``"regression"`` keeps float
    labels; non-integer numbers as class labels are refused).  Rows without a
    label (blank, None, "NaN", "null", ...) raise :class:`BeexError` unless
    ``missing="drop"`` (reported via ``progress.log``); labels outside
    ``label_names`` raise :class:`BeexError`.  ``dedupe=True`` drops repeated
    texts (conflicting copies removed).  See :func:`~beexbench.data.assemble.assemble_task`
    for the checks every task meets.
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise BeexError(f"dataset file {p} does not exist")
    fmt = format or _FORMATS.get(p.suffix.lower())
    if fmt is None:
        raise BeexError(f"cannot tell the format of {p.name}; use a .csv, .jsonl or .parquet "
                        f"file or pass format='csv'|'jsonl'|'parquet'")
    problem = problem or "classification"
    if problem not in ("classification", "regression"):
        raise BeexError(f"problem must be 'classification' or 'regression', not {problem!r}")
    if missing not in ("refuse", "drop"):
        raise BeexError(f"missing must be 'refuse' or 'drop', not {missing!r}")
    df = _read_table(p, fmt, sep)
    _require_columns(df, {"text": text_column, "label": label_column, "text_b": text_b_column},
                     p.name)
    cols = {"text": df[text_column], "label": df[label_column]}
    if text_b_column:
        cols["text_b"] = df[text_b_column]
    frame = pd.DataFrame(cols)
    frame = _missing_labels(frame, missing, p.name, progress)
    if dedupe:
        frame = _dedupe(frame, regression=(problem == "regression"))
    name = name or p.stem
    return assemble_task(
        frame, name=name, description=f"local dataset {p.name}", source=f"local:{p}",
        sha256=sha256_file(p), license_note="user-supplied data", problem=problem,
        label_names=tuple(label_names or ()),
        text_fields=("text", "text_b") if text_b_column else ("text",),
        vocab_size=vocab_size, max_len_cap=max_len_cap, progress=progress,
    )


# --------------------------------------------------------------------------- #
# Spec strings
# --------------------------------------------------------------------------- #
def is_dataset_spec(name: str) -> bool:
    """True for strings that name a file or HF dataset rather than a catalog task."""
    if not isinstance(name, str):
        return False
    head = name.split(":", 1)[0].lower()
    if ":" in name and head in _SCHEMES:
        return True
    base = name.split("?", 1)[0]
    return Path(base).suffix.lower() in _FORMATS and ("/" in base or os.sep in base
                                                      or Path(base).exists() or "?" in name)


def parse_dataset_spec(spec: str) -> tuple[str, str, dict[str, str]]:
    """``(kind, target, options)``; kind is csv/jsonl/parquet/hf."""
    if ":" in spec and spec.split(":", 1)[0].lower() in _SCHEMES:
        kind, rest = spec.split(":", 1)
        kind = kind.lower()
    else:
        kind, rest = "local", spec
    target, _, query = rest.partition("?")
    try:
        opts = dict(parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query)))
    except ValueError:
        raise BeexError(f"cannot parse the options in {spec!r}; use ?text=COL&label=COL") from None
    if kind in ("local", "file"):
        fmt = _FORMATS.get(Path(target).suffix.lower())
        if fmt is None:
            raise BeexError(f"cannot tell the format of {target!r}; prefix it with csv:, jsonl: "
                            f"or parquet:")
        kind = fmt
    if not target:
        raise BeexError(f"dataset spec {spec!r} names no file or dataset")
    return kind, target, opts


_LOCAL_KEYS, _HF_KEYS = LOCAL_KEYS, HF_KEYS  # the former names


def load_dataset_spec(spec: str, progress=NULL_PROGRESS) -> TaskData:
    kind, target, opts = parse_dataset_spec(spec)
    ints = checked_options(spec, kind, opts)  # every option in range, or one line naming each problem
    if kind == "hf":
        name, config = target, opts.get("config")
        if config is None and ":" in target:
            name, config = target.rsplit(":", 1)
        elif config is None and "/" in target:
            head, tail = target.rsplit("/", 1)
            if head in _CONFIG_COLLECTIONS:
                name, config = head, tail
        return load_hf_dataset(
            name, config, text_column=opts.get("text"), label_column=opts.get("label", "label"),
            text_b_column=opts.get("text_b"), problem=opts.get("problem"),
            revision=opts.get("revision"), progress=progress, **ints,
        )
    labels = opts.get("labels")
    return load_local_dataset(
        target, opts.get("text", "text"), opts.get("label", "label"), opts.get("text_b"),
        opts.get("name"), format=kind, problem=opts.get("problem"),
        label_names=tuple(labels.split(",")) if labels else None, sep=opts.get("sep"),
        dedupe=opts.get("dedupe", "").lower() in TRUE_WORDS,
        missing=opts.get("missing", "refuse").lower(), progress=progress, **ints,
    )
