"""Loading a task by name: a registered task (built and cached on first use) or a dataset
spec string.

A *task* is labelled text with fixed train/val/test splits and a WordPiece
tokenizer trained on its training split.  Where the parts live:

* :mod:`beexbench.data.registry`: the task registry (catalog, ``beexbench.tasks`` entry
  points, :func:`register_task`);
* :mod:`beexbench.data.definition`: :class:`TaskDefinition`, what a registered task is;
* :mod:`beexbench.data.card`: :class:`TaskCard` and :class:`TaskData`, what a loaded task is;
* :mod:`beexbench.data.assemble`: a task from a cleaned DataFrame, with the dataset checks;
* :mod:`beexbench.data.cache`: the on-disk cache layout, ``<cache>/tasks/<name>/v1/``.

``load_task`` also accepts dataset spec strings (see :mod:`beexbench.data.local`):
``csv:/path/f.csv?text=review&label=stars``, ``jsonl:...``, ``parquet:...``,
``hf:glue/sst2``.  The names above are re-exported here for callers of this module.
"""
from __future__ import annotations

import os

from beexbench.progress import NULL_PROGRESS

from .assemble import MAX_LEN_PERCENTILE, MIN_PER_CLASS, MIN_ROWS, apply_limit, assemble_task, check_splits
from .cache import clear_task_cache, load_cached, read_card, task_cache_dir
from .card import SPLITS, TaskCard, TaskData
from .definition import CACHE_VERSION, TaskDefinition, define_task
from .labels import MISSING_LABELS, describe_missing, is_missing_label, missing_label_mask, normalize_labels
from .local import is_dataset_spec, load_dataset_spec
from .registry import get_spec, list_tasks, register_task, unregister_task

__all__ = [
    "CACHE_VERSION",
    "DEFAULT_TASK",
    "SPLITS",
    "TaskCard",
    "TaskData",
    "TaskDefinition",
    "TaskSpec",
    "define_task",
    "register_task",
    "unregister_task",
    "list_tasks",
    "get_spec",
    "model_recipe",
    "load_task",
    "task_info",
    "task_cache_dir",
    "clear_task_cache",
    "assemble_task",
    "check_splits",
    "apply_limit",
    "normalize_labels",
    "is_missing_label",
    "missing_label_mask",
    "describe_missing",
    "MAX_LEN_PERCENTILE",
    "MIN_ROWS",
    "MIN_PER_CLASS",
    "MISSING_LABELS",
]

DEFAULT_TASK = "rotten_tomatoes"

# The former name of TaskDefinition (not the model-facing beexbench.adapters.base.TaskSpec).
TaskSpec = TaskDefinition


def model_recipe(name: str) -> dict:
    """A catalog task's settings for the models trained on it ({} for dataset specs)."""
    return {} if is_dataset_spec(name) else get_spec(name).model_recipe


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
    if is_dataset_spec(name):
        data = load_dataset_spec(name, progress=progress)
    else:
        data = load_cached(get_spec(name), cache_dir, progress)
    return apply_limit(data, limit)


def task_info(name: str, cache_dir: str | os.PathLike | None = None, progress=NULL_PROGRESS) -> TaskCard:
    """The task's card; reads only ``card.json`` when the cache is valid."""
    if not is_dataset_spec(name):
        card = read_card(get_spec(name), cache_dir)
        if card is not None:
            return card
    return load_task(name, cache_dir=cache_dir, progress=progress).card
