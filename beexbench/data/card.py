"""What a loaded task is: its :class:`TaskCard` (provenance and sizes) and :class:`TaskData`
(the card, three DataFrames and the tokenizer)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Mapping

import numpy as np
import pandas as pd
from tokenizers import Tokenizer

from .tokenize import encode

__all__ = ["SPLITS", "TaskCard", "TaskData"]

SPLITS = ("train", "val", "test")


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

    def encode(self, split: str, max_len: int | None = None, tokenizer: Tokenizer | None = None):
        """``(input_ids, attention_mask, labels)`` tensors for one split, with the task's own
        tokenizer or ``tokenizer`` (a pretrained backbone's).

        Labels are int64 class indices, or float32 for regression.
        """
        import torch

        df = self.split(split)
        texts_b = df["text_b"].tolist() if "text_b" in df.columns else None
        ids, mask = encode(tokenizer or self.tokenizer, df["text"].tolist(), texts_b, max_len or self.card.max_len)
        if self.card.problem == "regression":
            labels = torch.tensor(df["label"].to_numpy(dtype=np.float32))
        else:
            labels = torch.tensor(df["label"].to_numpy(dtype=np.int64))
        return ids, mask, labels
