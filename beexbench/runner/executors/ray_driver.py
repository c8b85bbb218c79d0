"""The Ray executor: a run's cells as Ray tasks on an existing cluster; the driver (this process)
keeps writing the one results store.

Scheduling, in two kinds of task:

* one training task per *training unit* (:mod:`.units`): the models of one task and seed linked by
  what they are trained from (``derived_from``, a starting network, a teacher), needs first - asking
  for CPUs only, so training packs onto any node with free CPUs. It trains into the model store,
  which every node must see at the same path (a shared filesystem: checkpoints are folders of several
  files that ``obtain_model`` writes atomically and reuses; see docs/CLUSTER.md). Linked models
  sharing one task means no two tasks ever train the same checkpoint.
* one measurement task per cell, submitted when its unit's training is done, asking for one unit of
  ``beexbench_target_<target>`` and one of ``beexbench_measure`` (capacity 1 per node): it runs only
  on a node that advertises its target, one measurement per node at a time. It loads the checkpoint
  from the store, measures and returns the record as a dict; the driver writes it.

Failures: an exception inside a cell is a failed record (as in the local executor), never retried;
a worker or node lost mid-task is retried by Ray (``max_retries``) on a node with the same
resources, and its cell is recorded once, when a result comes back. A target no live node
advertises fails its waiting cells after ``node_wait_s`` with what to do, rather than hang.
"""
from __future__ import annotations

import dataclasses
import os
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any, Iterable, Iterator

from ..._registry import REGISTERED_AT_RUN_TIME
from ..._signals import reclaim
from ...errors import BeexError
from ...results.context import EnvironmentInfo
from ...results.schema import CellKey, CellRecord
from ...results.store import now_iso
from ..cell import target_options
from ..models import model_store
from .base import RunContext, TaskPlan
from .options import RayOptions, build_options
from .reach import reachable as _reachable
from .resources import MEASURE, target_resource
from .units import Unit, training_units

INSTALL = "install the extra: pip install -e '.[ray]'"
CHECK_EVERY_S = 2.0  # how often the driver looks at which nodes are alive


def import_ray():
    try:
        import ray
    except ImportError:
        raise BeexError(f"--executor ray needs Ray, which is not installed: {INSTALL}") from None
    return ray


def run_time_refusal(key: CellKey) -> str | None:
    """Why a cluster node cannot run ``key``: a model or target registered by code in this process
    only (a node's beexbench does not run it), or None."""
    from ...adapters.registry import ADAPTERS
    from ...targets._registry import TARGETS

    for registry, name, what in ((ADAPTERS, key.model, "model"), (TARGETS, key.target, "target")):
        if name in registry and registry.entry(name).origin == REGISTERED_AT_RUN_TIME:
            return (f"{what} '{name}' was registered at run time in the driver, which a cluster node does not see: "
                    "register it through an entry point of a package installed on every node")
    return None


class RayExecutor:
    name = "ray"
    options = RayOptions  # typed, checked (.options); the constructor takes them as keyword arguments

    def __init__(self, address: str | None = None, *, max_retries: int = 3, node_wait_s: float = 120.0,
                 train_cpus: int = 1) -> None:
        opts = build_options(RayOptions, {"address": address, "max_retries": max_retries, "node_wait_s": node_wait_s,
                                          "train_cpus": train_cpus}, self.name)
        self.address = opts.address if opts.address is not None else os.environ.get("RAY_ADDRESS") or "auto"
        self.max_retries, self.node_wait_s, self.train_cpus = opts.max_retries, opts.node_wait_s, opts.train_cpus
        self._owned = False  # whether this executor made the Ray connection (and so ends it)

    # -- connecting --------------------------------------------------------------------------------
    def check_targets(self, targets: dict) -> None:
        """Ray installed and the cluster joined: before the run folder is made, so a wrong address
        fails in seconds with one line. Whether a target is available is each node's business
        (``beexbench worker`` checks it there; a node that cannot measure it fails the cell)."""
        ray = import_ray()
        if self.address not in ("auto", "local") and not self.address.startswith("ray://"):
            why = _reachable(self.address)
            if why:
                raise BeexError(f"cannot reach the Ray cluster at {self.address} ({why}): pass the address "
                                "`ray start --head` printed (--ray-address HOST:PORT), and check its port is open")
        self._owned = self._connect(ray, list(targets))

    def close(self) -> None:
        """Leave the cluster if this executor joined it (a connection the caller made stays)."""
        if self._owned:
            import_ray().shutdown()
            self._owned = False

    def _connect(self, ray, targets: list[str]) -> bool:
        """Join the cluster; True when this call started the connection (and so ends it)."""
        if ray.is_initialized():  # the caller is connected already (a notebook, a test): use theirs
            return False
        # log_to_driver off: nodes' output would tear through the driver's progress view (it is in
        # each node's Ray logs); the errors that matter come back in the records
        kwargs: dict[str, Any] = {"log_to_driver": False, "configure_logging": False}
        if self.address == "local":  # a private one-node cluster here, advertising the run's targets
            from .resources import node_resources

            ray.init(resources=node_resources(targets), **kwargs)
            reclaim()  # ray.init installs its own SIGTERM handler (exit 15, no message)
            return True
        try:
            ray.init(address=self.address, **kwargs)
        except Exception as exc:  # noqa: BLE001 - Ray raises ConnectionError, RuntimeError (version mismatch), ...
            if self.address == "auto" and isinstance(exc, ConnectionError):
                raise BeexError("no Ray cluster is running on this machine: start one (`ray start --head`, then "
                                "`beexbench worker --targets ...` on each measuring machine; docs/CLUSTER.md), pass "
                                "--ray-address HOST:PORT, or --ray-address local for a one-machine cluster") from None
            raise BeexError(f"cannot join the Ray cluster at {self.address}: {str(exc).splitlines()[0]}") from None
        reclaim()
        return True

    # -- running -----------------------------------------------------------------------------------
    def run(self, plans: Iterable[TaskPlan], ctx: RunContext) -> Iterator[CellRecord]:
        ray = import_ray()
        if not ray.is_initialized():  # run() without check_targets(): join now, leave after
            self.check_targets(ctx.targets)
        plans = list(plans)  # every task's cells are known before any is scheduled
        try:
            yield from _Schedule(ray, self, ctx, plans).run()
        finally:
            self.close()


class _Schedule:
    """One run's tasks on the cluster: submit, wait, turn results into records, keep progress."""

    def __init__(self, ray, executor: RayExecutor, ctx: RunContext, plans: list[TaskPlan]) -> None:
        from . import ray_tasks

        self.ray, self.ex, self.ctx, self.plans = ray, executor, ctx, plans
        # nodes train into (or read) the store the driver would: one absolute path for all, as a node's
        # working folder is not the driver's
        if ctx.cfg.models_from:
            self.cfg = dataclasses.replace(ctx.cfg, models_from=str(Path(ctx.cfg.models_from).resolve()))
        else:
            self.cfg = dataclasses.replace(ctx.cfg, models_dir=str(model_store(ctx.cfg).resolve()))
        self.options = target_options(ctx.cfg)
        retries = executor.max_retries
        # retry_exceptions off: an exception is the cell's own failure, recorded; only lost workers retry
        self.train_fn = ray.remote(num_cpus=executor.train_cpus, max_retries=retries,
                                   retry_exceptions=False)(ray_tasks.train_unit)
        self.measure_fn = ray.remote(num_cpus=0, max_retries=retries, retry_exceptions=False)(ray_tasks.measure_cell)
        self.pending: dict[Any, tuple[str, Any]] = {}  # ObjectRef -> ("train", Unit) | ("measure", key)
        self.unit_of: dict[CellKey, Unit] = {}
        self.trained: dict[int, dict] = {}  # id(unit) -> its training result's "models"
        self.state: dict[CellKey, str] = {}
        self.by_node: Counter = Counter()
        self.waiting_since: dict[str, float] = {}  # resource -> since when no live node offers it
        self.driver_env = ctx.environment(next(iter(ctx.targets)))

    # progress: one line over every cell, by state and by node
    def _show(self, handle, advance: float = 0) -> None:
        counts = Counter(self.state.values())
        fields = {s: counts.get(s, 0) for s in ("queued", "training", "measuring", "done", "failed")}
        if self.by_node:
            fields["nodes"] = ",".join(f"{n}:{c}" for n, c in sorted(self.by_node.items()))
        handle.advance(advance, **fields)

    def run(self) -> Iterator[CellRecord]:
        keys = [k for plan in self.plans for k in plan.todo]
        with self.ctx.progress.task(f"{len(keys)} cell(s) on the Ray cluster", total=len(keys)) as handle:
            runnable = []
            for key in keys:
                self.state[key] = "queued"
                refusal = run_time_refusal(key)
                if refusal:
                    yield self._finish(key, self._failed(key, refusal), handle)
                else:
                    runnable.append(key)
            problems = {plan.task: plan.encodings.problem for plan in self.plans}
            for unit in training_units(runnable, self.cfg, problems):
                self.unit_of.update({key: unit for key in unit.cells})
                if self.cfg.models_from:  # measured from a copied store: nothing to train
                    self.trained[id(unit)] = {}
                    for key in unit.cells:
                        self._submit_measure(key)
                else:
                    self._submit_train(unit)
            self._show(handle)
            last_check = 0.0
            while self.pending:
                ready, _ = self.ray.wait(list(self.pending), num_returns=1, timeout=1.0)
                for ref in ready:
                    yield from self._collect(ref, handle)
                if time.monotonic() - last_check >= CHECK_EVERY_S:
                    last_check = time.monotonic()
                    yield from self._fail_unplaceable(handle)

    def _submit_train(self, unit: Unit) -> None:
        ref = self.train_fn.options(name=f"train {'+'.join(unit.models)} on {unit.task} seed {unit.seed}").remote(
            self.cfg, unit.task, unit.models, unit.seed, self.ex.train_cpus)
        self.pending[ref] = ("train", unit)
        for key in unit.cells:
            self.state[key] = "training"

    def _submit_measure(self, key: CellKey, checkpoint: str | None = None) -> None:
        ref = self.measure_fn.options(name=f"measure {key.slug}",
                                      resources={target_resource(key.target): 1, MEASURE: 1}).remote(
            self.cfg, key, self.options, self.ctx.cfg.to_dict(), checkpoint)
        self.pending[ref] = ("measure", key)
        self.state[key] = "measuring"

    def _collect(self, ref, handle) -> Iterator[CellRecord]:
        kind, what = self.pending.pop(ref)
        try:
            value, error = self.ray.get(ref), None
        except self.ray.exceptions.RayError as exc:  # retries spent: the worker or node was lost each time
            value, error = None, _ray_error(self.ray, exc, self.ex.max_retries)
        if kind == "train":
            self.trained[id(what)] = (value or {}).get("models", {})
            for key in what.cells:
                problem = error or self._training_problem(what, key)
                if problem:
                    yield self._finish(key, self._failed(key, problem), handle)
                else:
                    self._submit_measure(key, (self.trained[id(what)].get(key.model) or {}).get("checkpoint"))
            self._show(handle)
            return
        key = what
        if error:
            yield self._finish(key, self._failed(key, error), handle)
            return
        record = CellRecord.from_dict(value, source=f"the Ray task measuring {key.slug}")
        facts = self.trained.get(id(self.unit_of[key]), {}).get(key.model)
        if record.status == "ok" and facts is not None:  # trained by the unit's task, not by this one
            record.model["trained_this_run"] = bool(facts.get("trained"))
        record.warnings += self._skew(record.environment)
        node = EnvironmentInfo.of(record.environment).node_name
        self.by_node["?" if node is None else node] += 1
        yield self._finish(key, record, handle)

    def _training_problem(self, unit: Unit, key: CellKey) -> str | None:
        """Why ``key``'s model is not ready after its unit's training (None: it is)."""
        info = self.trained[id(unit)].get(key.model)
        if info is None:
            return f"its training task returned nothing for {key.model}: report this as a bug"
        return None if info.get("ok") else str(info.get("error"))

    def _skew(self, env: dict) -> list[str]:
        """A warning when the node's beexbench is not the driver's (same version and commit expected)."""
        ours, node = EnvironmentInfo.of(self.driver_env), EnvironmentInfo.of(env)
        mine, theirs = (ours.beexbench_version, ours.git_commit), (node.beexbench_version, node.git_commit)
        if theirs != mine:
            return [f"measured by beexbench {theirs[0]} (commit {str(theirs[1])[:10]}) on the node, while the driver "
                    f"runs {mine[0]} (commit {str(mine[1])[:10]}): install the same beexbench on every node"]
        return []

    def _failed(self, key: CellKey, error: str) -> CellRecord:
        record = CellRecord(key=key, run_id="", status="failed", error=error)
        record.started_at = now_iso()
        record.environment = self.ctx.environment(key.target)  # it never ran on a node: the driver's
        return record

    def _finish(self, key: CellKey, record: CellRecord, handle) -> CellRecord:
        record.run_id = self.ctx.run_id
        record.finished_at = record.finished_at or now_iso()
        self.state[key] = "done" if record.status == "ok" else "failed"
        self._show(handle, 1)
        return record

    def _fail_unplaceable(self, handle) -> Iterator[CellRecord]:
        """Cells whose resources no live node offers, for longer than node_wait_s: cancelled and
        failed with what to do (Ray would keep them pending forever)."""
        offered: set[str] = set()
        cpus = 0.0
        for node in self.ray.nodes():
            if node.get("Alive"):
                res = node.get("Resources") or {}
                cpus += res.get("CPU", 0.0)
                if res.get(MEASURE, 0) >= 1:
                    offered |= {name for name, amount in res.items() if amount >= 1}
        needs: dict[str, list] = defaultdict(list)
        for ref, (kind, what) in self.pending.items():
            needs["CPU" if kind == "train" else target_resource(what.target)].append(ref)
        now = time.monotonic()
        for resource, refs in needs.items():
            placeable = cpus >= self.ex.train_cpus if resource == "CPU" else resource in offered
            if placeable:
                self.waiting_since.pop(resource, None)
                continue
            since = self.waiting_since.setdefault(resource, now)
            if now - since < self.ex.node_wait_s:
                continue
            for ref in refs:
                self.ray.cancel(ref, force=False)
                kind, what = self.pending.pop(ref)
                keys = what.cells if kind == "train" else [what]
                for key in keys:
                    yield self._finish(key, self._failed(key, _unplaceable(resource, key, self.ex)), handle)


def _unplaceable(resource: str, key: CellKey, ex: RayExecutor) -> str:
    if resource == "CPU":
        return (f"no live node of the Ray cluster has {ex.train_cpus} CPU(s) for training for {ex.node_wait_s:.0f} s: "
                "start a node with CPUs (`beexbench worker --num-cpus N`), then `beexbench run --resume RUN --executor ray`")
    return (f"no live node of the Ray cluster advertises target '{key.target}' (Ray resources {resource} and {MEASURE}) "
            f"for {ex.node_wait_s:.0f} s: start one with `beexbench worker --targets {key.target} --address ADDRESS`, "
            "then finish the run with `beexbench run --resume RUN --executor ray`")


def _ray_error(ray, exc: BaseException, retries: int) -> str:
    """One line for a task that brought no result back."""
    first = (str(exc).strip().splitlines() or [""])[0]
    if isinstance(exc, ray.exceptions.RayTaskError):  # raised outside the cell's own guard (e.g. unpickling)
        return f"{type(exc).__name__}: {first} (check that every node runs the driver's beexbench and Python)"
    return (f"{type(exc).__name__}: {first} (lost {retries + 1} time(s), Ray's {retries} retries included: "
            "see the node's Ray logs, then `beexbench run --resume RUN --executor ray`)")
