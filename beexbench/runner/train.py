"""``train_suite``: fill a model store (portable: copy it and measure elsewhere)."""
from __future__ import annotations

from pathlib import Path

from ..adapters.registry import get_adapter_class
from ..config import RunConfig
from ..data import load_task
from ..profilers.ops import DepthCost
from ..progress import NULL_PROGRESS, Progress
from .models import obtain_model
from .run import prepare_task, validate_names


def train_suite(cfg: RunConfig, progress: Progress = NULL_PROGRESS) -> list[Path]:
    validate_names(cfg)
    written = []
    for task_name in cfg.tasks:
        data = load_task(task_name, progress=progress, limit=cfg.limit)
        splits, spec = prepare_task(data)
        for model, seeds in cfg.planned_models():  # the reference floors too, so --models-from finds them
            reason = get_adapter_class(model).problem_refusal(spec.problem)
            if reason:
                progress.log(f"skipping {model} on {task_name}: {reason}")
                continue
            for seed in seeds:
                _, directory, _ = obtain_model(model, spec, splits["train"], splits["val"], cfg, seed,
                                               cost_fn_factory=lambda a: DepthCost.measure(a).macs, progress=progress)
                written.append(directory)
    return written
