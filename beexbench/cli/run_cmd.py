"""``beexbench run`` and ``beexbench train``."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ._options import BatchSizes, ConfigFile, Floors, Format, Limit, Models, ModelsDir, ModelsFrom, Seeds, Suite, TargetOpt, Tasks, Threads, split_csv


def _config(suite, config, models, tasks, target, threads, batch_sizes, seeds, limit, models_dir, models_from, results=None, run_id=None,
            floors=None):
    from ..config import load_config

    return load_config(
        suite, config,
        models=split_csv(models), tasks=split_csv(tasks), target=target, threads=threads,
        latency_batch_sizes=split_csv(batch_sizes, int), seeds=split_csv(seeds, int), limit=limit,
        models_dir=str(models_dir) if models_dir else None, models_from=str(models_from) if models_from else None,
        results_dir=str(results) if results else None, run_id=run_id, floors=floors,
    )


def run(
    suite: Suite = None,
    config: ConfigFile = None,
    models: Models = None,
    tasks: Tasks = None,
    target: TargetOpt = None,
    threads: Threads = None,
    batch_sizes: BatchSizes = None,
    seeds: Seeds = None,
    limit: Limit = None,
    models_dir: ModelsDir = None,
    models_from: ModelsFrom = None,
    floors: Floors = None,
    results: Annotated[Optional[Path], typer.Option("--results", help="Where runs are written (default: results/).")] = None,
    run_id: Annotated[Optional[str], typer.Option("--run-id", help="Name of the run folder.")] = None,
    resume: Annotated[Optional[Path], typer.Option("--resume", help="A run folder to finish: only missing cells run.")] = None,
    fresh: Annotated[bool, typer.Option("--fresh", help="Start a new run even if the same job has an unfinished one.")] = False,
    fmt: Format = "text",
) -> None:
    """Train what is missing, measure every model on every task, write results/<run-id>/."""
    from ..runner import run_suite
    from ._progress import RichProgress
    from ._summary import print_summary

    cfg = _config(suite, config, models, tasks, target, threads, batch_sizes, seeds, limit, models_dir, models_from, results, run_id,
                  floors)
    if resume is not None:
        cfg = _resume_config(resume, cfg)
    with RichProgress() as progress:
        summary = run_suite(cfg, progress, resume_dir=resume, fresh=fresh)
    print_summary(summary, fmt)
    if summary.failed:
        raise typer.Exit(1)


def _resume_config(resume: Path, cfg):
    """Resuming re-uses the run's own saved configuration."""
    from ..config import RunConfig, _build
    from ..results.store import RunDir

    saved = RunDir(resume).read_run().get("config") or {}
    return _build(RunConfig, saved, "") if saved else cfg


def train(
    suite: Suite = None,
    config: ConfigFile = None,
    models: Models = None,
    tasks: Tasks = None,
    seeds: Seeds = None,
    limit: Limit = None,
    floors: Floors = None,
    out: Annotated[Optional[Path], typer.Option("--out", help="Model store to write (copy it to another machine).")] = None,
) -> None:
    """Train the suite's models into a portable model store (no measuring)."""
    from ..runner.train import train_suite
    from ._progress import RichProgress

    cfg = _config(suite, config, models, tasks, None, None, None, seeds, limit, out, None, floors=floors)
    with RichProgress() as progress:
        written = train_suite(cfg, progress)
    for path in written:
        typer.echo(str(path))
