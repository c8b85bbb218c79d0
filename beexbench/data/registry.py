"""The task registry: the project's generic :class:`~beexbench._registry.Registry` of
:class:`~beexbench.data.definition.TaskDefinition` values.

Three ways in, one mechanism (``"module:attr"`` entries resolved on first use):

* the built-in catalog (:data:`BUILTIN_TASKS`, definitions in :mod:`beexbench.data.catalog`);
* the ``beexbench.tasks`` entry-point group, for third-party packages;
* :func:`register_task` at run time (tests, notebooks).

Importing this module registers nothing and imports no catalog: the registry adds the built-in
names and the entry points on its first lookup, and imports a definition's module only when that
task is asked for.
"""
from __future__ import annotations

import dataclasses
import difflib
from typing import Any

from beexbench._registry import Registry
from beexbench.errors import BeexError, UnknownNameError

from .definition import Builder, TaskDefinition, define_task

__all__ = ["TASKS", "BUILTIN_TASKS", "ENTRY_POINT_GROUP", "register_task", "unregister_task", "list_tasks", "get_spec"]

ENTRY_POINT_GROUP = "beexbench.tasks"

# The catalog, in the order `beexbench list tasks` shows it (the first is the default task).
BUILTIN_TASKS: dict[str, str] = {
    name: f"beexbench.data.catalog:{name}"
    for name in ("rotten_tomatoes", "sms_spam", "trec", "bbc_news", "tweet_sentiment", "movie_sentiment_score")
}

TASKS: Registry[TaskDefinition] = Registry("task", entry_point_group=ENTRY_POINT_GROUP, builtins=BUILTIN_TASKS)


def register_task(name: str, builder: Builder | None = None, *, replace: bool = False, **fields: Any):
    """Register a task builder ``builder(cache_dir: Path, progress) -> DataFrame``; ``fields``
    are :func:`~beexbench.data.definition.define_task`'s (description, label_names, problem,
    source, sha256, license_note, vocab_size, max_len_cap, text_fields, revision, model_recipe).

    The DataFrame has ``text`` (and ``text_b`` for pair tasks) and ``label``:
    class indices into ``label_names``, label strings, or floats for
    ``problem="regression"``.  Usable directly or as a decorator (which returns the
    builder unchanged).  A name already taken (catalog, entry point or an earlier call)
    raises ``ValueError`` unless ``replace=True``.
    """
    define = define_task(name, **fields)

    def _register(fn: Builder) -> Builder:
        if name in TASKS:
            if not replace:
                raise ValueError(f"task {name!r} is already registered (pass replace=True)")
            TASKS.unregister(name)
        TASKS.register(name)(define(fn))
        return fn

    if builder is None:
        return _register
    _register(builder)
    return builder


def unregister_task(name: str) -> None:
    TASKS.unregister(name)


def list_tasks() -> list[str]:
    """Names of registered tasks (catalog first, then entry points, then run-time registrations)."""
    return TASKS.names(sort=False)


def get_spec(name: str) -> TaskDefinition:
    """The task ``name``'s definition (its module imported on first use).

    Unknown names raise :class:`UnknownNameError` with the closest names; an entry point that
    cannot be imported or names no :class:`TaskDefinition` raises :class:`BeexError`.
    """
    if name not in TASKS:
        known = list_tasks()
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
        hint = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
        raise UnknownNameError(
            f"unknown task {name!r}; {hint}known tasks: {', '.join(known)} "
            f"(or a dataset spec like csv:PATH?text=COL&label=COL, hf:glue/sst2)"
        )
    entry = TASKS.entry(name)
    where = f"{entry.target} ({entry.origin})" if isinstance(entry.target, str) else entry.origin
    spec = entry.load()
    if not isinstance(spec, TaskDefinition):
        raise BeexError(f"task '{name}' from {where} is not a beexbench TaskDefinition "
                        f"(got {type(spec).__name__}); make it with beexbench.data.define_task")
    if spec.name != name:  # an entry point may publish a definition under another name
        try:
            spec = dataclasses.replace(spec, name=name)
        except ValueError as exc:
            raise BeexError(f"task '{name}' ({entry.origin}): {exc}") from None
        entry.target = spec
    return spec
