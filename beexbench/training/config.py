"""Training settings, and nested-config merging with errors that name the bad key."""
from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from typing import Any

from ..errors import BeexError


@dataclass
class TrainConfig:
    epochs: int = 6
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    schedule: str = "cosine"  # "cosine" | "linear"
    clip_norm: float = 1.0
    seed: int = 0
    max_train_examples: int | None = None  # subsample the train split (tiny runs)
    patience: int = 0  # stop after this many epochs without a better validation score; 0 = run every epoch
    length_buckets: int = 50  # sort windows of this many batches by length (less padding); 0 = off


def merge(base: dict, overrides: dict, *, where: str = "config") -> dict:
    """Deep-merge ``overrides`` (nested dicts or dotted keys) into a copy of ``base``.
    A key that ``base`` lacks is an error naming it."""
    out = copy.deepcopy(base)
    for key, value in overrides.items():
        head, _, rest = key.partition(".")
        if head not in out:
            raise BeexError(f"unknown key '{where}.{head}': known keys are {', '.join(sorted(out))}")
        if rest:
            value = {rest: value}
        if isinstance(out[head], dict) and isinstance(value, dict):
            out[head] = merge(out[head], value, where=f"{where}.{head}")
        else:
            out[head] = value
    return out


def build_dataclass(cls: type, values: dict[str, Any], *, where: str):
    """Instantiate dataclass ``cls`` from ``values``, checking names and basic types."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key, value in values.items():
        if key not in fields:
            raise BeexError(f"unknown key '{where}.{key}': known keys are {', '.join(fields)}")
        default = getattr(cls(), key)
        if default is not None and value is not None and not _same_kind(default, value):
            raise BeexError(
                f"'{where}.{key}' must be {type(default).__name__}, got {type(value).__name__} ({value!r})"
            )
    return cls(**values)


def _same_kind(default: Any, value: Any) -> bool:
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(default, int):
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, type(default))
