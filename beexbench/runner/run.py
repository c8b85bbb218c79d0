"""``run_suite``: the main job. Validates the whole configuration before any work (user errors:
:class:`~beexbench.errors.BeexError`, nothing runs), trains what is missing, measures every
(model, task, target, seed) cell and writes each record atomically as soon as it finishes;
``resume`` skips cells already written. Whatever goes wrong inside one cell - a BeexError
included (a checkpoint missing from ``--models-from``, a model that cannot run this task's
shape) - fails that cell only: it is recorded and the suite goes on."""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

from ..adapters.base import TaskSpec
from ..adapters.spec import SCRATCH
from ..adapters.registry import get_adapter_class
from ..config import RunConfig
from ..data import load_task
from ..data.tasks import model_recipe
from ..errors import BeexError
from ..profilers.environment import capture_environment
from ..profilers.size import keep_tokenizer
from ..progress import NULL_PROGRESS, Progress
from ..results.schema import CellKey
from ..results.store import RunDir, new_run_id, now_iso
from ..targets import get_target
from ..validate import check
from ..training.batches import EncodedSplit
from ..training.metrics import check_labels, label_stats, standardize
from .cell import failed_record, target_options
from .executors.base import Executor, RunContext, TaskPlan
from .executors.local import LocalExecutor
from .models import model_store, overrides_for


@dataclass
class RunSummary:
    run_dir: Path
    written: list[CellKey] = field(default_factory=list)
    skipped: list[CellKey] = field(default_factory=list)
    failed: list[tuple[CellKey, str]] = field(default_factory=list)
    unsupported: list[tuple[CellKey, str]] = field(default_factory=list)  # model cannot run on the target
    data_failed: list[tuple[CellKey, BaseException]] = field(default_factory=list)  # written as failed cells
    seconds: float = 0.0


def prepare_task(data, tokenizer=None) -> tuple[dict[str, EncodedSplit], TaskSpec]:
    """The encoded train/val/test splits and the task's shape, with the task's own tokenizer or
    ``tokenizer`` (a pretrained backbone's: its vocabulary is then the TaskSpec's). The task's declared problem
    (its card's ``problem``, kept as ``TaskSpec.problem``) is what every later step goes by;
    the labels are checked to agree with it here (class indices, or float scores). Regression
    labels are standardized with the train split's mean and std (kept in the spec, so
    predictions map back to the label scale)."""
    tokenizer = tokenizer or data.tokenizer
    splits = {name: EncodedSplit(*data.encode(name, tokenizer=tokenizer)) for name in ("train", "val", "test")}
    mean, std = 0.0, 1.0
    if data.card.problem == "regression":
        mean, std = label_stats(splits["train"].labels)
        splits = {name: EncodedSplit(sp.input_ids, sp.attention_mask, standardize(sp.labels, mean, std))
                  for name, sp in splits.items()}
    for name, sp in splits.items():
        check_labels(sp.labels, data.card.problem, where=f"task {data.card.name}'s {name} split")
    tok_sha = keep_tokenizer(tokenizer).stem  # its sha256; kept where the size profiler counts it (issue 28)
    spec = TaskSpec(task=data.card.name, num_labels=data.card.num_labels, vocab_size=tokenizer.get_vocab_size(),
                    max_len=data.card.max_len, tokenizer_sha256=tok_sha, problem=data.card.problem,
                    label_mean=mean, label_std=std)
    return splits, spec


class TaskEncodings:
    """A task's encoded splits and TaskSpec for each tokenizer its models read: the task's own
    (models trained from scratch) or a pretrained backbone's (``model.backbone``), each encoded
    once per run."""

    def __init__(self, task: str, data, cfg: RunConfig) -> None:
        self.task, self.data, self.cfg = task, data, cfg  # task: as the run names it (a spec string too)
        self._by_backbone: dict[str, tuple[dict[str, EncodedSplit], TaskSpec]] = {}

    @property
    def problem(self) -> str:
        return self.data.card.problem

    def for_model(self, name: str, seed: int) -> tuple[dict[str, EncodedSplit], TaskSpec]:
        backbone = backbone_of(name, self.cfg, seed, model_recipe(self.task), self.problem)
        if backbone not in self._by_backbone:
            tokenizer = None
            if backbone != SCRATCH:
                from ..backbones.sources import backbone_tokenizer, resolve_backbone

                tokenizer = backbone_tokenizer(resolve_backbone(backbone), self.data.card.max_len)
            self._by_backbone[backbone] = prepare_task(self.data, tokenizer)
        return self._by_backbone[backbone]


def backbone_of(name: str, cfg: RunConfig, seed: int, recipe: dict | None, problem: str) -> str:
    """The pretrained backbone model ``name`` is built on in this run (``"scratch"``: none), from
    its registered settings with the run's (what ``create_model`` will build)."""
    cls = get_adapter_class(name)
    if not cls.uses_model_spec:
        return SCRATCH
    settings = cls.default_spec(problem).merged(overrides_for(name, cfg, seed, recipe))
    return settings.backbone.name


def validate_names(cfg: RunConfig) -> None:
    """Fail before any work, listing every problem of the configuration (beexbench.validate)."""
    check(cfg)


def config_fingerprint(cfg: RunConfig) -> str:
    """What makes two runs the same job (where they are written does not)."""
    doc = {k: v for k, v in cfg.to_dict().items() if k not in ("run_id", "results_dir")}
    if doc.get("floors", True):  # the default: a run started before the key existed stays the same job
        doc.pop("floors", None)
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]


def _unfinished_run(cfg: RunConfig, fingerprint: str) -> RunDir | None:
    """The latest unfinished run of the same job in ``results_dir``, if any."""
    root = Path(cfg.results_dir)
    if not root.is_dir():
        return None
    for path in sorted(root.iterdir(), reverse=True):
        try:
            run = RunDir.under(root, path.name)  # a symlink out of the results folder is not a run to resume
            doc = run.read_run() if (path / "run.json").is_file() else {}
        except BeexError:
            continue
        if doc.get("config_fingerprint") == fingerprint and not doc.get("finished_at"):
            return run
    return None


def run_targets(cfg: RunConfig, targets: Sequence[str] | None = None) -> list[str]:
    """The run's targets: ``targets`` (several measure the same trained models on each: a cluster
    places each on the nodes that advertise it), else the configuration's one."""
    names = list(dict.fromkeys(targets or [cfg.target]))
    if names[0] != cfg.target:
        raise BeexError(f"the run's first target is its configured one ({cfg.target}), not {names[0]}: list it first")
    return names


def run_fingerprint(cfg: RunConfig, targets: Sequence[str]) -> str:
    """:func:`config_fingerprint`, with the extra targets when there are several (a run of one
    target keeps the fingerprint it always had, so older unfinished runs still resume)."""
    if list(targets) == [cfg.target]:
        return config_fingerprint(cfg)
    return hashlib.sha256(f"{config_fingerprint(cfg)} {json.dumps(list(targets))}".encode()).hexdigest()[:16]


def run_suite(cfg: RunConfig, progress: Progress = NULL_PROGRESS, *, resume_dir: Path | None = None,
              fresh: bool = False, targets: Sequence[str] | None = None, executor: Executor | None = None) -> RunSummary:
    """Run every cell of ``cfg`` on each of ``targets`` (default: the configured target) with
    ``executor`` (default: this process, :class:`LocalExecutor`). The same job re-run after an
    interruption resumes its unfinished run (only missing or failed cells run) unless ``fresh``;
    ``resume_dir`` finishes that run on the targets it was started with."""
    validate_names(cfg)
    executor = executor or LocalExecutor()
    if resume_dir is not None and targets is None and (Path(resume_dir) / "run.json").is_file():
        targets = RunDir(Path(resume_dir)).read_run().get("targets")
    names = run_targets(cfg, targets)
    built = {name: get_target(name, **target_options(cfg)) for name in names}
    executor.check_targets(built)
    try:
        return _run_suite(cfg, progress, resume_dir, fresh, names, built, executor)
    finally:
        executor.close()


def _run_suite(cfg: RunConfig, progress: Progress, resume_dir: Path | None, fresh: bool, names: list[str], built: dict,
               executor: Executor) -> RunSummary:
    fingerprint = run_fingerprint(cfg, names)
    if resume_dir is not None:
        run = RunDir(Path(resume_dir))
        if not (run.path / "run.json").is_file():
            raise BeexError(f"{resume_dir} is not a beexbench run folder: pass a folder under results/")
    else:
        run = None if (fresh or cfg.run_id) else _unfinished_run(cfg, fingerprint)
        if run is not None:
            progress.log(f"resuming unfinished run {run.run_id} (pass --fresh to start a new one)")
        else:
            run = RunDir.under(Path(cfg.results_dir), cfg.run_id or new_run_id(cfg.suite))
    with run.lock():
        return _run_locked(run, cfg, built, fingerprint, progress, executor)


def _run_locked(run: RunDir, cfg: RunConfig, targets: dict, fingerprint: str, progress: Progress,
                executor: Executor) -> RunSummary:
    start = time.perf_counter()
    summary = RunSummary(run.path)
    cells = run.check_resumable()  # records it cannot read are refused, never rewritten
    environments: dict[str, dict] = {}

    def environment(name: str) -> dict:  # captured once per target, in this process
        if name not in environments:
            environments[name] = capture_environment(targets[name], seed=cfg.seeds[0], config=cfg.to_dict())
        return environments[name]

    first = next(iter(targets))
    if not (run.path / "run.json").is_file():
        doc = {"run_id": run.run_id, "suite": cfg.suite, "config": cfg.to_dict(), "config_fingerprint": fingerprint,
               "started_at": now_iso(), "environment": environment(first), "model_store": str(model_store(cfg))}
        if len(targets) > 1:
            doc["targets"] = list(targets)
        if executor.name != "local":
            doc["executor"] = executor.name
        run.write_run(doc)
    else:
        environment(first)  # as before: the driver's environment is read when the run starts
    ctx = RunContext(cfg=cfg, run_id=run.run_id, targets=targets, progress=progress, environment=environment)
    for record in executor.run(_plan(cfg, targets, cells, summary, progress), ctx):
        key = record.key
        record.run_id = run.run_id
        if record.status != "ok":
            summary.failed.append((key, record.error or ""))
            progress.log(f"[red]{key.model} on {key.task} ({key.target}) failed: {record.error}")
        run.write_cell(record, previous=cells[key][0] if key in cells else None)
        summary.written.append(key)
    for key, exc in summary.data_failed:  # tasks whose data failed its checks after cells had run
        record = failed_record(key, exc)
        record.run_id, record.environment = run.run_id, environment(key.target)
        record.started_at = record.finished_at = now_iso()
        summary.failed.append((key, record.error or ""))
        run.write_cell(record, previous=cells[key][0] if key in cells else None)
        summary.written.append(key)
    summary.seconds = time.perf_counter() - start
    if not summary.failed:
        run.update_run(finished_at=now_iso())
    return summary


def _fail_task(todo: list[CellKey], exc: BeexError, summary: RunSummary, progress: Progress) -> None:
    """A task whose data fails its checks once cells have run: its cells are failed (written by
    the driver with the others, re-run by ``--resume`` once the data is fixed)."""
    summary.data_failed += [(key, exc) for key in todo]
    progress.log(f"[red]task {todo[0].task} failed its data checks: {exc}")


def _plan(cfg: RunConfig, targets: dict, cells: dict, summary: RunSummary, progress: Progress) -> Iterator[TaskPlan]:
    """Task by task, the cells still to run (missing or failed); cells a model cannot run (its
    devices, the task's problem) go to ``summary.unsupported``. A generator: a task's data is
    loaded when the executor reaches it."""
    for task_name in cfg.tasks:
        keys = []
        for target in targets.values():
            for m, seeds in cfg.planned_models():
                devices = get_adapter_class(m).devices
                for s in seeds:
                    key = CellKey(m, task_name, target.name, s, setting=cfg.suite)
                    if target.device.type in devices:
                        keys.append(key)
                    else:
                        reason = f"{m} runs on {', '.join(devices)} only, not on {target.device.type}"
                        summary.unsupported.append((key, reason))
                        progress.log(f"skipping {m} on {target.name}: {reason}")
        todo = [k for k in keys if k not in cells or cells[k][1].status != "ok"]
        summary.skipped += [k for k in keys if k not in todo]
        if not todo:
            continue
        try:
            data = load_task(task_name, progress=progress, limit=cfg.limit)
        except BeexError as exc:  # the task's data fails its checks
            if not summary.written:  # before any cell ran: a usage error, nothing ran (the folder is removed)
                raise
            _fail_task(todo, exc, summary, progress)  # after: its cells fail, the run goes on and exits 1
            continue
        encodings = TaskEncodings(task_name, data, cfg)
        for key in list(todo):
            reason = get_adapter_class(key.model).problem_refusal(encodings.problem)
            if reason:
                summary.unsupported.append((key, reason))
                progress.log(f"skipping {key.model} on {task_name}: {reason}")
                todo.remove(key)
        if todo:
            yield TaskPlan(task_name, data.card.to_dict(), encodings, todo)
