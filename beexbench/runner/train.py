"""``train_suite``: fill a model store (portable: copy it and measure elsewhere)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..adapters.registry import get_adapter_class
from ..config import RunConfig
from ..data import load_task
from ..data.tasks import model_recipe
from ..profilers.ops import DepthCost
from ..progress import NULL_PROGRESS, Progress
from .models import obtain_model
from .run import TaskEncodings, validate_names


@dataclass
class TrainSummary:
    written: list[Path] = field(default_factory=list)  # checkpoint folders, trained now or found in the store
    failed: list[tuple[str, str]] = field(default_factory=list)  # ("model on task, seed N", error)


def train_suite(cfg: RunConfig, progress: Progress = NULL_PROGRESS) -> TrainSummary:
    """Train every (model, task, seed) of ``cfg`` into its model store. User errors are found by
    the validation pass before any work; a model that fails (a BeexError included) is recorded
    and the others still train."""
    validate_names(cfg)
    out = TrainSummary()
    for task_name in cfg.tasks:
        data = load_task(task_name, progress=progress, limit=cfg.limit)
        encodings = TaskEncodings(task_name, data, cfg)
        for model, seeds in cfg.planned_models():  # the reference floors too, so --models-from finds them
            reason = get_adapter_class(model).problem_refusal(encodings.problem)
            if reason:
                progress.log(f"skipping {model} on {task_name}: {reason}")
                continue
            for seed in seeds:
                try:
                    splits, spec = encodings.for_model(model, seed)
                    _, directory, _ = obtain_model(model, spec, splits["train"], splits["val"], cfg, seed,
                                                   recipe=model_recipe(task_name),
                                                   cost_fn_factory=lambda a: DepthCost.measure(a).macs, progress=progress)
                except Exception as exc:  # one broken model must not stop the others (nothing of it is cached)
                    out.failed.append((f"{model} on {task_name}, seed {seed}", f"{type(exc).__name__}: {exc}"))
                    progress.log(f"[red]{model} on {task_name} (seed {seed}) failed: {exc}")
                    continue
                out.written.append(directory)
    return out
