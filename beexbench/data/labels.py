"""Labels: raw label columns mapped to class indices (or regression targets), and the refusals
of labels that are missing or that are numbers posing as classes."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from beexbench.errors import BeexError

__all__ = ["MISSING_LABELS", "normalize_labels", "is_missing_label", "missing_label_mask", "describe_missing"]

# label strings that mean "no label" (compared stripped and lower-cased); never classes
MISSING_LABELS = frozenset({"", "nan", "-nan", "null", "<na>", "n/a", "#n/a"})


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
