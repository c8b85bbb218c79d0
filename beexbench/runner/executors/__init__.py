"""Where a run's cells execute: this process (``local``, the default), a Ray cluster (``ray``), or
an executor a package adds through the ``beexbench.executors`` entry-point group. The driver
(``run_suite``) plans the cells and writes every record; an executor only runs them.

An executor is a class with the :class:`~.base.Executor` methods and ``options``, the frozen
dataclass of what it takes (:mod:`.options`); it is built from those options as keyword arguments.
"""
from __future__ import annotations

from typing import Any

from ..._registry import Entry, Registry
from .base import Executor, RunContext, TaskPlan
from .local import LocalExecutor
from .options import as_kwargs, build_options, option_names

ENTRY_POINT_GROUP = "beexbench.executors"
BUILTIN_EXECUTORS = {
    "local": "beexbench.runner.executors.local:LocalExecutor",
    "ray": "beexbench.runner.executors.ray_driver:RayExecutor",  # imports Ray only when it runs (an extra)
}


def _check_executor(entry: Entry, cls: Any) -> type:
    from ...errors import BeexError

    missing = [m for m in ("check_targets", "run", "close") if not callable(getattr(cls, m, None))]
    options = getattr(cls, "options", None)
    if not isinstance(cls, type) or missing or not (isinstance(options, type) and hasattr(options, "__dataclass_fields__")):
        raise BeexError(f"executor '{entry.name}' ({entry.origin}) is not a beexbench executor: it needs "
                        f"check_targets, run and close, and `options`, a dataclass of what it takes")
    return cls


EXECUTORS: Registry[type] = Registry("executor", entry_point_group=ENTRY_POINT_GROUP, builtins=BUILTIN_EXECUTORS,
                                     check=_check_executor)


def takes_options(name: str) -> tuple[str, ...]:
    """The options executor ``name`` takes (an unknown name: one line with the closest ones)."""
    return option_names(EXECUTORS.get(name).options)


def get_executor(name: str, **options: Any) -> Executor:
    """The executor called ``name``, built from ``options`` (checked against its ``options``
    dataclass: an option it does not take, a wrong type or value is a one-line BeexError)."""
    cls = EXECUTORS.get(name)
    return cls(**as_kwargs(build_options(cls.options, options, name)))


__all__ = ["EXECUTORS", "Executor", "LocalExecutor", "RunContext", "TaskPlan", "get_executor", "takes_options"]
