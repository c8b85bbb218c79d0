"""``beexbench run`` and ``beexbench train``."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from . import _exit
from ._options import (BatchSizes, ConfigFile, ExecutorOpt, Floors, ForceThreads, Format, Limit, Models, ModelsDir, ModelsFrom,
                       NodeWait, RayAddress, Seeds, Suite, TargetOpt, Tasks, Threads, TrainCpus, split_csv)


def _flags(models=None, tasks=None, target=None, threads=None, force_threads=False, batch_sizes=None, seeds=None, limit=None,
           models_dir=None, models_from=None, results=None, run_id=None, floors=None, scenarios=None) -> dict[str, Any]:
    """The run configuration's keys as the CLI flags give them (None = not given)."""
    return dict(
        models=split_csv(models, flag="--models"), tasks=split_csv(tasks, flag="--tasks"), target=target, threads=threads,
        force_threads=force_threads or None, latency_batch_sizes=split_csv(batch_sizes, int, "--batch-sizes"),
        seeds=split_csv(seeds, int, "--seeds"), limit=limit, models_dir=_text(models_dir), models_from=_text(models_from),
        results_dir=_text(results), run_id=run_id, floors=floors, latency_scenarios=scenarios,
    )


def _text(path: Path | None) -> str | None:
    return str(path) if path else None


def run(
    suite: Suite = None,
    config: ConfigFile = None,
    models: Models = None,
    tasks: Tasks = None,
    target: TargetOpt = None,
    threads: Threads = None,
    force_threads: ForceThreads = False,
    batch_sizes: BatchSizes = None,
    scenarios: Annotated[Optional[str], typer.Option("--scenarios", help=(
        "Comma-separated deployment scenarios: single-stream, offline, server (latency.scenarios)."))] = None,
    seeds: Seeds = None,
    limit: Limit = None,
    models_dir: ModelsDir = None,
    models_from: ModelsFrom = None,
    floors: Floors = None,
    results: Annotated[Optional[Path], typer.Option("--results", help="Where runs are written (default: results/).")] = None,
    run_id: Annotated[Optional[str], typer.Option("--run-id", help="Name of the run folder.")] = None,
    resume: Annotated[Optional[Path], typer.Option(
        "--resume", help="A run folder to finish with its own saved configuration: only missing or failed cells run.")] = None,
    fresh: Annotated[bool, typer.Option("--fresh", help="Start a new run even if the same job has an unfinished one.")] = False,
    fmt: Format = "text",
    executor: ExecutorOpt = "local",
    ray_address: RayAddress = None,
    node_wait: NodeWait = None,
    train_cpus: TrainCpus = None,
) -> None:
    """Train what is missing, measure every model on every task, write results/<run-id>/.
    Exit status: 0 every cell ok, 1 some cells failed, 2 bad input, 3 a write refused, 130 interrupted (Ctrl-C), 143 terminated (SIGTERM)."""
    from ..config import load_config
    from ..runner import run_suite
    from ..runner.executors import get_executor
    from ._progress import RichProgress
    from ._summary import failed_line, print_summary

    targets = split_csv(target, flag="--target")
    flags = _flags(models, tasks, targets[0] if targets else None, threads, force_threads, batch_sizes, seeds, limit, models_dir,
                   models_from, results, run_id, floors, scenarios)
    cfg = load_config(suite, config, **flags) if resume is None else _resume_config(resume, suite, config, flags, fresh)
    if resume is not None:
        targets = _resume_targets(resume, cfg.target, targets)
    runner = get_executor(executor, **executor_options(executor, ray_address, node_wait, train_cpus))
    with RichProgress() as progress:
        summary = run_suite(cfg, progress, resume_dir=resume, fresh=fresh, targets=targets, executor=runner)
    print_summary(summary, fmt)
    if summary.failed:
        typer.echo(f"error: {failed_line(summary)}", err=True)
        raise typer.Exit(_exit.CELLS_FAILED)


# the executor flags, each the option of the executor's ``options`` it sets (beexbench.runner.executors)
EXECUTOR_FLAGS = {"--ray-address": "address", "--node-wait": "node_wait_s", "--train-cpus": "train_cpus"}


def executor_options(executor: str, ray_address: str | None, node_wait: float | None, train_cpus: int | None
                     ) -> dict[str, Any]:
    """The executor's own flags (None = not given) as its options: a flag of an option this
    executor does not take is refused, never ignored; the values are checked by the executor's
    options (``--node-wait`` finite and > 0, ...). An unknown executor: one line, closest names."""
    from ..errors import BeexError
    from ..runner.executors import takes_options

    given = {flag: v for flag, v in zip(EXECUTOR_FLAGS, (ray_address, node_wait, train_cpus)) if v is not None}
    known = takes_options(executor)
    named = [flag for flag in given if EXECUTOR_FLAGS[flag] not in known]
    if named:
        raise BeexError(f"{', '.join(named)} {'is' if len(named) == 1 else 'are'} for --executor ray, and this run "
                        f"uses --executor {executor}: drop {'it' if len(named) == 1 else 'them'}, or add --executor ray")
    return {EXECUTOR_FLAGS[flag]: value for flag, value in given.items()}


def _resume_config(resume: Path, suite: str | None, config: Path | None, flags: dict[str, Any], fresh: bool):
    """Resuming finishes a run with the configuration it was started with. Flags that agree
    with it are fine; flags that would change it are refused, never silently ignored."""
    from ..config import RunConfig, _build, apply_flags, load_config
    from ..errors import BeexError
    from ..results.store import RunDir

    if fresh:
        raise BeexError("--fresh starts a new run and --resume finishes an old one: give only one of them")
    if not (Path(resume) / "run.json").is_file():
        raise BeexError(f"{resume} is not a beexbench run folder (no run.json): pass a folder under results/")
    saved_doc = RunDir(Path(resume)).read_run().get("config")
    if not saved_doc:  # a run.json without its configuration: the flags are all there is
        return load_config(suite, config, **flags)
    saved = _build(RunConfig, saved_doc, "")
    changed = _other_folder(Path(resume), flags.pop("results_dir"), flags.pop("run_id"))
    asked = load_config(suite, config, **flags) if suite or config else apply_flags(saved, **flags)
    changed += [f.name for f in dataclasses.fields(RunConfig)
                if f.name not in ("results_dir", "run_id") and getattr(asked, f.name) != getattr(saved, f.name)]
    if changed:
        raise BeexError(f"--resume finishes {resume} with the configuration it was started with, and the flags given change "
                        f"{', '.join(changed)}: drop them, or start a new run without --resume")
    return saved


def _resume_targets(resume: Path, target: str, asked: list[str] | None) -> list[str]:
    """The targets a resumed run was started with; --target may repeat them, not change them."""
    from ..errors import BeexError
    from ..results.store import RunDir

    saved = RunDir(Path(resume)).read_run().get("targets") or [target]
    if asked and asked != saved:
        raise BeexError(f"--resume finishes {resume} on the targets it was started with ({', '.join(saved)}), and --target "
                        f"gives {', '.join(asked)}: drop --target, or start a new run without --resume")
    return saved


def _other_folder(resume: Path, results: str | None, run_id: str | None) -> list[str]:
    """The flags among --results and --run-id that name another folder than ``resume``."""
    folder = resume.resolve()
    return ((["--results"] if results is not None and Path(results).resolve() != folder.parent else [])
            + (["--run-id"] if run_id is not None and run_id != folder.name else []))


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
    """Train the suite's models into a portable model store (no measuring).
    Exit status: 0 every model trained, 1 some failed (the others are stored), 2 bad input."""
    from ..config import load_config
    from ..runner.train import train_suite
    from ._progress import RichProgress

    cfg = load_config(suite, config, **_flags(models, tasks, seeds=seeds, limit=limit, models_dir=out, floors=floors))
    with RichProgress() as progress:
        summary = train_suite(cfg, progress)
    for path in summary.written:
        typer.echo(str(path))
    if summary.failed:
        typer.echo("error: " + "; ".join(f"{what} failed ({error})" for what, error in summary.failed)
                   + ": fix the cause and re-run the same command (trained models are reused)", err=True)
        raise typer.Exit(_exit.CELLS_FAILED)
