"""Where a run's cells execute: this process (``local``, the default) or a Ray cluster (``ray``).
The driver (``run_suite``) plans the cells and writes every record; an executor only runs them."""
from __future__ import annotations

from .base import Executor, RunContext, TaskPlan
from .local import LocalExecutor

EXECUTORS = ("local", "ray")


def get_executor(name: str, *, ray_address: str | None = None, **options) -> Executor:
    """The executor called ``name``; ``ray`` imports Ray only now (an optional extra)."""
    from ...errors import BeexError

    if name == "local":
        if ray_address is not None:
            raise BeexError("--ray-address is for --executor ray: drop it, or add --executor ray")
        return LocalExecutor()
    if name == "ray":
        from .ray_driver import RayExecutor

        return RayExecutor(address=ray_address, **options)
    raise BeexError(f"unknown executor '{name}': choose one of {', '.join(EXECUTORS)}")


__all__ = ["EXECUTORS", "Executor", "LocalExecutor", "RunContext", "TaskPlan", "get_executor"]
