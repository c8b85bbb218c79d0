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
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from ..adapters.base import TaskSpec
from ..adapters.spec import SCRATCH
from ..adapters.registry import get_adapter_class
from ..config import RunConfig
from ..data import load_task
from ..data.tasks import model_recipe
from ..errors import BeexError
from ..profilers.environment import capture_environment, noise_warnings
from ..profilers.ops import DepthCost
from ..progress import NULL_PROGRESS, Progress
from ..results.schema import CellKey, CellRecord
from ..results.store import RunDir, new_run_id, now_iso
from ..targets import get_target
from ..validate import check
from ..training.batches import EncodedSplit
from ..training.metrics import check_labels, label_stats, standardize
from .isolate import measure_speed_by_threads
from .measure import cell_metrics, measure_accuracy_and_exits, measure_model_size
from .models import model_store, obtain_model, overrides_for


@dataclass
class RunSummary:
    run_dir: Path
    written: list[CellKey] = field(default_factory=list)
    skipped: list[CellKey] = field(default_factory=list)
    failed: list[tuple[CellKey, str]] = field(default_factory=list)
    unsupported: list[tuple[CellKey, str]] = field(default_factory=list)  # model cannot run on the target
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
    tok_sha = hashlib.sha256(tokenizer.to_str().encode()).hexdigest()
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


def target_options(cfg: RunConfig) -> dict:
    """What the run passes to its target's factory (the isolated measurements rebuild it so)."""
    return {"threads": cfg.threads} if cfg.threads else {}


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


def run_suite(cfg: RunConfig, progress: Progress = NULL_PROGRESS, *, resume_dir: Path | None = None,
              fresh: bool = False) -> RunSummary:
    """Run every cell of ``cfg``. The same job re-run after an interruption resumes its
    unfinished run (only missing or failed cells run) unless ``fresh``."""
    validate_names(cfg)
    target = get_target(cfg.target, **target_options(cfg))
    ok, reason = target.available()
    if not ok:
        raise BeexError(f"target '{cfg.target}' is not available here ({reason}): choose another with --target (see `beexbench list targets`)")
    fingerprint = config_fingerprint(cfg)
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
        return _run_locked(run, cfg, target, fingerprint, progress)


def _run_locked(run: RunDir, cfg: RunConfig, target, fingerprint: str, progress: Progress) -> RunSummary:
    start = time.perf_counter()
    summary = RunSummary(run.path)
    cells = run.check_resumable()  # records it cannot read are refused, never rewritten
    environment = capture_environment(target, seed=cfg.seeds[0], config=cfg.to_dict())
    if not (run.path / "run.json").is_file():
        run.write_run({"run_id": run.run_id, "suite": cfg.suite, "config": cfg.to_dict(), "config_fingerprint": fingerprint,
                       "started_at": now_iso(), "environment": environment, "model_store": str(model_store(cfg))})
    for task_name in cfg.tasks:
        keys = []
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
        data = load_task(task_name, progress=progress, limit=cfg.limit)
        encodings = TaskEncodings(task_name, data, cfg)
        for key in list(todo):
            reason = get_adapter_class(key.model).problem_refusal(encodings.problem)
            if reason:
                summary.unsupported.append((key, reason))
                progress.log(f"skipping {key.model} on {task_name}: {reason}")
                todo.remove(key)
        for key in todo:
            started = now_iso()
            try:
                splits, spec = encodings.for_model(key.model, key.seed)
                record = _run_cell(key, cfg, spec, data.card.to_dict(), splits, target, progress)
            except Exception as exc:  # a condition of this cell (a BeexError too) fails it; the others go on
                record = CellRecord(key=key, run_id=run.run_id, status="failed", error=f"{type(exc).__name__}: {exc}",
                                    model={"traceback": traceback.format_exc(limit=8)})
                summary.failed.append((key, record.error or ""))
                progress.log(f"[red]{key.model} on {key.task} failed: {record.error}")
            record.run_id = run.run_id
            record.started_at, record.finished_at = started, now_iso()
            record.environment = environment
            run.write_cell(record, previous=cells[key][0] if key in cells else None)
            summary.written.append(key)
    summary.seconds = time.perf_counter() - start
    if not summary.failed:
        run.update_run(finished_at=now_iso())
    return summary


def _run_cell(key: CellKey, cfg: RunConfig, spec: TaskSpec, card: dict, splits, target, progress) -> CellRecord:
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
            "training_note": entry.training_note,
        },
        task=card,
        target=target.describe(),
        metrics=cell_metrics(quality, size, speed, by_threads),
        warnings=warnings,
    )
