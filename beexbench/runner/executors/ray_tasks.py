"""What a cluster node runs: plain functions (no Ray import), turned into Ray tasks by the driver
(:mod:`.ray_driver`). Each reads the run's configuration as the driver sent it, trains into or loads
from the shared model store, and returns plain data; nothing here writes results."""
from __future__ import annotations

import time
from collections import OrderedDict
from pathlib import Path

from ...adapters.checkpoint import META
from ...config import RunConfig
from ...data import load_task
from ...data.tasks import model_recipe
from ...errors import BeexError
from ...profilers.environment import capture_environment, node_info
from ...profilers.ops import DepthCost
from ...progress import NULL_PROGRESS
from ...results.schema import CellKey
from ...results.store import now_iso
from ...targets import get_target
from ..cell import failed_record, run_cell
from ..models import obtain_model
from ..run import TaskEncodings
from .busy import shared_warning, training_mark
from .units import needs

_ENCODINGS: "OrderedDict[tuple, TaskEncodings]" = OrderedDict()  # per worker process: Ray reuses workers
_KEEP = 2


def _encodings(cfg: RunConfig, task: str) -> TaskEncodings:
    """The task's encodings, loaded once per worker process for the latest tasks (a node measures many
    cells of one task in a row)."""
    ident = (task, cfg.limit, repr(cfg.model), repr(sorted(cfg.model_overrides.items())))
    if ident not in _ENCODINGS:
        _ENCODINGS[ident] = TaskEncodings(task, load_task(task, progress=NULL_PROGRESS, limit=cfg.limit), cfg)
        while len(_ENCODINGS) > _KEEP:
            _ENCODINGS.popitem(last=False)
    _ENCODINGS.move_to_end(ident)
    return _ENCODINGS[ident]


def train_unit(cfg: RunConfig, task: str, models: list[str], seed: int, threads: int) -> dict:
    """Train (or find in the store) ``models`` for ``task`` and ``seed``, in order: what a model is
    trained from (its source, starting network, teacher) before it, so one task trains each once. Returns, per model,
    whether it is ready (``ok``), trained now (``trained``) and its error; and the node."""
    import torch

    torch.set_num_threads(max(1, threads))  # as many as the task reserved (Ray's CPUs): training packs
    out: dict = {"node": node_info(), "models": {}}
    failed: dict[str, str] = {}
    with training_mark(f"{'+'.join(models)} on {task}, seed {seed}"):
        try:
            encodings = _encodings(cfg, task)
        except Exception as exc:  # the task's data cannot be read on this node: every model of it fails
            err = failed_record(CellKey(models[0], task, "", seed), exc)
            return {**out, "models": {m: {"ok": False, "error": err.error, "traceback": err.model["traceback"]}
                                      for m in models}}
        for model in models:
            need = next((m for m in needs(model, cfg, task, seed, encodings.problem) if m in failed), None)
            if need:  # obtain_model would train it again, and it just failed: say so instead
                out["models"][model] = {"ok": False, "error": f"{need}, which it is trained from, failed: {failed[need]}"}
                failed[model] = out["models"][model]["error"]
                continue
            try:
                splits, spec = encodings.for_model(model, seed)
                _, directory, trained = obtain_model(model, spec, splits["train"], splits["val"], cfg, seed,
                                                     recipe=model_recipe(task),
                                                     cost_fn_factory=lambda a: DepthCost.measure(a).macs)
                out["models"][model] = {"ok": True, "trained": trained, "checkpoint": str(directory)}
            except Exception as exc:  # one model's failure (diverged, bad settings) fails its cells only
                err = failed_record(CellKey(model, task, "", seed), exc)
                out["models"][model] = {"ok": False, "error": err.error, "traceback": err.model["traceback"]}
                failed[model] = err.error or ""
    return out


def measure_cell(cfg: RunConfig, key: CellKey, target_options: dict, config_doc: dict,
                 checkpoint: str | None = None) -> dict:
    """One cell on this node: its model from the shared store (trained there first by the driver's
    training task; trained here only if the store lost it), measured on ``key.target``. Returns the
    record as a dict; the record's environment is this node's (``config_doc``: the run's configuration
    as run.json has it, before the driver pinned the store's path for the nodes). ``checkpoint``: the
    folder the training task wrote, which must be visible here (a store that is not shared would
    otherwise be trained into again, on this node, unnoticed)."""
    started, t0 = now_iso(), time.time()
    target = get_target(key.target, **target_options)
    try:
        ok, reason = target.available()
        if not ok:
            raise BeexError(f"target '{key.target}' is not available on node {node_info()['name']} ({reason}): "
                            "restart that node's `beexbench worker` without it")
        if checkpoint and not (Path(checkpoint) / META).is_file():
            raise BeexError(f"the checkpoint {checkpoint}, trained on another node, is not visible on node "
                            f"{node_info()['name']}: the model store must be one shared filesystem path on every node "
                            "(docs/CLUSTER.md)")
        encodings = _encodings(cfg, key.task)
        splits, spec = encodings.for_model(key.model, key.seed)
        record = run_cell(key, cfg, spec, encodings.data.card.to_dict(), splits, target, NULL_PROGRESS)
        record.warnings += shared_warning(t0, time.time())
    except Exception as exc:  # a condition of this cell (a BeexError too) fails it; Ray retries only lost workers
        record = failed_record(key, exc)
    record.started_at, record.finished_at = started, now_iso()
    record.environment = capture_environment(target, seed=cfg.seeds[0], config=config_doc)
    return record.to_dict()
