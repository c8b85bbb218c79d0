"""The seam between planning a run and executing its cells.

``run_suite`` plans (which cells are missing, which a model cannot run) and owns the results store;
an executor runs the planned cells and yields each finished :class:`CellRecord` - ok or failed - for
the driver to write. Executors never write results: one process writes one store.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Protocol

from ...config import RunConfig
from ...progress import Progress
from ...results.schema import CellKey, CellRecord


@dataclass
class TaskPlan:
    """One task's cells to run: its name as the run gives it, its card, its encodings (the task's
    splits, per tokenizer, in the driver's process) and the cells, in order."""

    task: str
    card: dict[str, Any]
    encodings: Any  # beexbench.runner.run.TaskEncodings
    todo: list[CellKey] = field(default_factory=list)


@dataclass
class RunContext:
    """What every executor needs: the run's configuration and id, its targets as the driver built
    them (name -> Target), where progress goes, and the environment recorded for a target's cells
    (captured in the driver: what the local executor records; a cluster records each node's own)."""

    cfg: RunConfig
    run_id: str
    targets: dict[str, Any]
    progress: Progress
    environment: Callable[[str], dict[str, Any]]


class Executor(Protocol):
    name: str

    def check_targets(self, targets: dict[str, Any]) -> None:
        """Refuse, before the run folder is made, targets this executor can never run (BeexError)."""

    def run(self, plans: Iterable[TaskPlan], ctx: RunContext) -> Iterator[CellRecord]:
        """Run every planned cell; yield each record (run_id, started_at, finished_at and
        environment set) as soon as it finishes."""

    def close(self) -> None:
        """Release what :meth:`check_targets` took (a cluster connection); called once the run ends."""
