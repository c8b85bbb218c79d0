"""Shared ``Annotated`` options, declared once."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

ResultsDir = Annotated[Path, typer.Option("--results", help="Folder of runs (or one run folder).")]
Suite = Annotated[Optional[str], typer.Option("--suite", help="Built-in suite: smoke, default, paper.")]
ConfigFile = Annotated[Optional[Path], typer.Option("--config", help="A suite file (TOML) to use instead of a built-in suite.")]
Models = Annotated[Optional[str], typer.Option("--models", help="Comma-separated model names (see `beexbench list models`).")]
Tasks = Annotated[Optional[str], typer.Option("--tasks", help="Comma-separated task names or dataset specs.")]
TargetOpt = Annotated[Optional[str], typer.Option(
    "--target", help="cpu, cuda, or an emulated edge profile; several, comma-separated, measure the same trained models on each.")]
ExecutorOpt = Annotated[str, typer.Option(
    "--executor", help="Where cells run: local (this process) or ray (a Ray cluster: docs/CLUSTER.md).")]
RayAddress = Annotated[Optional[str], typer.Option(
    "--ray-address", help="With --executor ray: the cluster's HOST:PORT, 'auto' (one started here with `ray start`), or 'local'.")]
TrainCpus = Annotated[Optional[int], typer.Option(
    "--train-cpus", help="With --executor ray: CPUs (and torch threads) each training task takes (default: 1).")]
NodeWait = Annotated[Optional[float], typer.Option(
    "--node-wait", help="With --executor ray: seconds a cell waits for a node advertising its target before it fails "
    "(default: 120).")]
Threads = Annotated[Optional[int], typer.Option("--threads", help="Intra-op threads, 1 to the usable cores (recorded in results).")]
ForceThreads = Annotated[bool, typer.Option("--force-threads", help="Allow --threads beyond the usable cores (oversubscribe).")]
BatchSizes = Annotated[Optional[str], typer.Option("--batch-sizes", help="Comma-separated latency batch sizes.")]
Seeds = Annotated[Optional[str], typer.Option("--seeds", help="Comma-separated training seeds.")]
Limit = Annotated[Optional[int], typer.Option("--limit", help="Use at most N examples per split (quick runs).")]
ModelsDir = Annotated[Optional[Path], typer.Option("--models-dir", help="Checkpoint store to train into / reuse.")]
ModelsFrom = Annotated[Optional[Path], typer.Option("--models-from", help="A model store from another machine: measure without training.")]
Floors = Annotated[Optional[bool], typer.Option("--floors/--no-floors", help="Add the reference floors (majority, bow-linear) to every task (default: on).")]
Format = Annotated[str, typer.Option("--format", help="text or json.")]


def split_csv(value: str | None, kind=str, flag: str | None = None):
    """``"a, b"`` -> ``["a", "b"]`` (each converted by ``kind``); a bad item is a usage error naming ``flag``."""
    if value is None:
        return None
    items = [v.strip() for v in value.split(",") if v.strip()]
    try:
        return [kind(v) for v in items]
    except ValueError:
        raise typer.BadParameter(f"expected comma-separated {kind.__name__} values, got {value!r}", param_hint=flag) from None
