"""What a registered task is: a :class:`TaskDefinition` (its builder, per-task defaults and the
recipe that keys its cache) and :func:`define_task` to write one.

A definition is a plain value: making one registers nothing. The task registry
(:mod:`beexbench.data.registry`) holds them; a third-party package exports one and names it in
the ``beexbench.tasks`` entry-point group::

    # my_pkg/tasks.py
    from beexbench.data import define_task

    @define_task("my_reviews", label_names=("neg", "pos"), description="...")
    def my_reviews(cache_dir, progress):      # -> DataFrame with text[, text_b], label
        ...

    # pyproject.toml
    [project.entry-points."beexbench.tasks"]
    my_reviews = "my_pkg.tasks:my_reviews"
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import pandas as pd

from .assemble import MAX_LEN_PERCENTILE
from .splits import SPLIT_FRACTIONS, SPLIT_RECIPE, SPLIT_SEED
from .tokenize import TOKENIZER_RECIPE

__all__ = ["CACHE_VERSION", "Builder", "TaskDefinition", "define_task"]

CACHE_VERSION = "v1"

Builder = Callable[[Path, object], pd.DataFrame]


def check_task_fields(name: str, problem: str) -> None:
    """The checks a task's name and problem meet (``ValueError``)."""
    if problem not in ("classification", "regression"):
        raise ValueError(f"problem must be 'classification' or 'regression', not {problem!r}")
    if not isinstance(name, str) or not name or ":" in name or "/" in name:
        raise ValueError(f"task names may not contain ':' or '/': {name!r}")


@dataclass(frozen=True)
class TaskDefinition:
    """A task: how to build it (``builder(cache_dir: Path, progress) -> DataFrame``) and its
    per-task defaults. Sequences are stored as tuples; ``model_recipe`` as a dict."""

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

    def __post_init__(self) -> None:
        check_task_fields(self.name, self.problem)
        if not callable(self.builder):
            raise TypeError(f"task {self.name!r}: builder must be callable, not {type(self.builder).__name__}")
        for attr, conv in (("label_names", tuple), ("text_fields", tuple), ("vocab_size", int),
                           ("max_len_cap", int), ("revision", int), ("model_recipe", dict)):
            object.__setattr__(self, attr, conv(getattr(self, attr) or conv()))

    def recipe(self) -> dict:
        """Everything that decides the cached files; its hash keys the cache (MANIFEST.json)."""
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


def define_task(
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
):
    """A :class:`TaskDefinition` for ``builder``; registers nothing.

    Usable directly (``define_task("x", build, ...)``) or as a decorator, which turns the
    decorated builder function into the definition.
    """
    check_task_fields(name, problem)

    def _define(fn: Builder) -> TaskDefinition:
        return TaskDefinition(
            name=name, builder=fn, description=description, label_names=tuple(label_names),
            problem=problem, source=source, sha256=sha256, license_note=license_note,
            vocab_size=vocab_size, max_len_cap=max_len_cap, text_fields=tuple(text_fields),
            revision=revision, model_recipe=dict(model_recipe or {}),
        )

    return _define if builder is None else _define(builder)
