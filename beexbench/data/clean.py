"""Text cleaning shared by the catalog, local files and Hugging Face datasets: whitespace
collapsed, duplicate texts dropped, and the check that a table has the columns asked for."""
from __future__ import annotations

import numpy as np
import pandas as pd

from beexbench.errors import BeexError

__all__ = ["clean_text", "dedupe", "require_columns"]


def clean_text(s) -> str:
    """Whitespace collapsed to single spaces; None and NaN become ``""``."""
    if s is None or (isinstance(s, float) and np.isnan(s)):
        return ""
    return " ".join(str(s).split())


def dedupe(df: pd.DataFrame, regression: bool = False) -> pd.DataFrame:
    """Collapse whitespace, drop empty texts and duplicate texts.

    Classification: a text whose copies carry different labels is dropped.
    Regression: copies are merged into one row with the mean label.
    Row order of first occurrences is kept.
    """
    df = df.copy()
    df["text"] = [clean_text(t) for t in df["text"]]
    df = df[df["text"].str.len() > 0]
    if regression:
        mean = df.groupby("text", sort=False)["label"].mean()
        first = df.drop_duplicates("text", keep="first").copy()
        first["label"] = first["text"].map(mean)
        return first.reset_index(drop=True)
    n_labels = df.groupby("text", sort=False)["label"].nunique()
    conflicted = set(n_labels[n_labels > 1].index)
    df = df[~df["text"].isin(conflicted)]
    return df.drop_duplicates("text", keep="first").reset_index(drop=True)


def require_columns(df: pd.DataFrame, cols: dict[str, str | None], where: str) -> None:
    """Refuse a table that lacks one of ``cols`` (role -> column name; None: not asked for)."""
    available = [str(c) for c in df.columns]
    for role, col in cols.items():
        if col is not None and col not in df.columns:
            raise BeexError(
                f"{where} has no {role} column {col!r}; available columns: {', '.join(available)}"
            )
