"""Training settings (the ``train`` section of a :class:`~beexbench.adapters.spec.ModelSpec`),
and nested-config merging with errors that name the bad key.

The field defaults below are the one place the training defaults live (see
``beexbench/adapters/spec.py``); validation happens when a ModelSpec is made, not here, so
the training loop can be driven directly with any ``TrainConfig``."""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Literal

from ..errors import BeexError

Schedule = Literal["cosine", "linear"]  # the learning-rate schedules of training.loop (SCHEDULES)


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 6
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    schedule: Schedule = "cosine"
    clip_norm: float | None = 1.0
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
