"""One cell, wherever it runs (in the run's own process or on a cluster node): train or load the
model, measure it on one target, and compose its record. A failure of the cell is a failed record,
never an exception that stops the other cells."""
from __future__ import annotations

import traceback

from ..adapters.base import TaskSpec
from ..adapters.registry import get_adapter_class
from ..config import RunConfig
from ..data.tasks import model_recipe
from ..profilers.environment import noise_warnings
from ..profilers.ops import DepthCost
from ..results.schema import CellKey, CellRecord
from .isolate import measure_speed_by_threads
from .measure import cell_metrics, measure_accuracy_and_exits, measure_declared, measure_model_size
from .models import obtain_model


def target_options(cfg: RunConfig) -> dict:
    """What the run passes to its target's factory (the isolated measurements rebuild it so)."""
    return {"threads": cfg.threads} if cfg.threads else {}


def failed_record(key: CellKey, exc: BaseException) -> CellRecord:
    """The record of a cell that raised ``exc`` (its traceback kept for the report)."""
    return CellRecord(key=key, run_id="", status="failed", error=f"{type(exc).__name__}: {exc}",
                      model={"traceback": "".join(traceback.format_exception(exc, limit=8))})


def run_cell(key: CellKey, cfg: RunConfig, spec: TaskSpec, card: dict, splits, target, progress) -> CellRecord:
    depths: dict[int, DepthCost] = {}  # costs depend on the architecture only: count each model once

    def cost_fn(a):
        depths[id(a)] = DepthCost.measure(a)
        return depths[id(a)].macs

    adapter, ckpt, trained = obtain_model(
        key.model, spec, splits["train"], splits["val"], cfg, key.seed, recipe=model_recipe(key.task),
        cost_fn_factory=cost_fn, progress=progress,
    )
    depth = depths.get(id(adapter)) or DepthCost.measure(adapter)
    quality = measure_accuracy_and_exits(adapter, splits["test"], depth, spec.problem)
    size = measure_model_size(adapter, ckpt)
    declared = measure_declared(adapter, splits["test"], target)  # the declared metrics (results.columns)
    with target.activate():
        warnings = list(noise_warnings(target))
    speed, by_threads, isolation_notes = measure_speed_by_threads(
        adapter, ckpt, splits["test"], target, target_options(cfg), cfg.latency, cfg.energy, progress)
    warnings += speed.warnings + isolation_notes
    entry = get_adapter_class(key.model)
    return CellRecord(
        key=key,
        run_id="",
        model={
            "name": key.model,
            "description": (entry.__doc__ or "").strip().splitlines()[0] if entry.__doc__ else "",
            "config": adapter.config,
            "fit": adapter.fit_report.to_dict() if adapter.fit_report else None,
            "checkpoint": str(ckpt),
            "trained_this_run": trained,
            "precision_notes": list(adapter.precision().notes),
            "role": str(entry.role),  # as the adapter declares it (beexbench.adapters.roles)
            "training_note": adapter.training_note,  # the instance says: a backbone model is fine-tuned, maybe distilled
        },
        task=card,
        target=target.describe(),
        metrics=cell_metrics(quality, size, speed, by_threads, declared),
        warnings=warnings,
    )
