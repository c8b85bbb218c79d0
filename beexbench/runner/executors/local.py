"""The default executor: every cell in the run's own process, one after another, in plan order."""
from __future__ import annotations

from typing import Iterable, Iterator

from ...errors import BeexError
from ...results.schema import CellRecord
from ...results.store import now_iso
from ..cell import failed_record, run_cell
from .base import RunContext, TaskPlan
from .options import LocalOptions


class LocalExecutor:
    name = "local"
    options = LocalOptions  # none

    def check_targets(self, targets: dict) -> None:
        for name, target in targets.items():
            ok, reason = target.available()
            if not ok:
                raise BeexError(f"target '{name}' is not available here ({reason}): choose another with --target "
                                "(see `beexbench list targets`)")

    def close(self) -> None:
        pass

    def run(self, plans: Iterable[TaskPlan], ctx: RunContext) -> Iterator[CellRecord]:
        for plan in plans:  # a generator: one task's data is loaded when its cells are reached
            for key in plan.todo:
                started = now_iso()
                try:
                    splits, spec = plan.encodings.for_model(key.model, key.seed)
                    record = run_cell(key, ctx.cfg, spec, plan.card, splits, ctx.targets[key.target], ctx.progress)
                except Exception as exc:  # a condition of this cell (a BeexError too) fails it; the others go on
                    record = failed_record(key, exc)
                record.run_id = ctx.run_id
                record.started_at, record.finished_at = started, now_iso()
                record.environment = ctx.environment(key.target)
                yield record
