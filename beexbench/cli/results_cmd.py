"""``beexbench results``: list, merge and export runs."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, List, Optional

import typer

from ._options import Format

app = typer.Typer(help="List, merge and export saved runs.", no_args_is_help=True)
Roots = Annotated[Optional[List[Path]], typer.Option("--results", help="Run folder(s) or folders of runs (repeatable).")]


@app.command("list")
def list_(results: Roots = None, fmt: Format = "text") -> None:
    """One line per run: cells finished and failed."""
    from ..results.merge import list_runs

    rows = list_runs(results or [Path("results")])
    if fmt == "json":
        typer.echo(json.dumps(rows, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="runs")
    for col in ("run_id", "suite", "target", "cells_ok", "cells_failed", "started_at", "finished_at"):
        table.add_column(col)
    for r in rows:
        table.add_row(*(str(r[c] if r[c] is not None else "—") for c in ("run_id", "suite", "target", "cells_ok", "cells_failed", "started_at", "finished_at")))
    Console().print(table)


@app.command("merge")
def merge(
    results: Roots = None,
    out: Annotated[Path, typer.Option("--out", help="Run folder for the merged cells: a new one, or an existing run to add missing cells to.")] = Path("results/merged"),
    prefer: Annotated[Optional[str], typer.Option("--prefer", help="'newer': when a cell differs between runs, keep the one finished later (default: refuse).")] = None,
    fmt: Format = "text",
) -> None:
    """Merge runs (e.g. from several machines) into one run folder; never overwrites a cell
    unless --prefer newer, never replaces an existing run.json."""
    from ..results.merge import merge_runs

    n, notes = merge_runs(results or [Path("results")], out, prefer=prefer)
    if fmt == "json":
        typer.echo(json.dumps({"out": str(out), "cells": n, "notes": notes}, indent=2))
        return
    for note in notes:
        typer.echo(f"note: {note}")
    typer.echo(f"merged {n} cells into {out}")


EXPORT_TO = ("csv", "parquet", "mlflow")


@app.command("export")
def export(
    results: Roots = None,
    out: Annotated[Optional[Path], typer.Option("--out", help="A .csv or .parquet file (default: results/results.csv).")] = None,
    to: Annotated[Optional[str], typer.Option("--to", help="csv, parquet or mlflow (default: from --out's suffix).")] = None,
    mlflow_uri: Annotated[Optional[str], typer.Option(
        "--mlflow-uri", help="With --to mlflow: sqlite:///PATH.db, file:PATH or http(s)://HOST[:PORT] "
        "(default: MLFLOW_TRACKING_URI, else MLflow's default local store).")] = None,
    experiment: Annotated[Optional[str], typer.Option(
        "--experiment", help="With --to mlflow: the MLflow experiment (default: each run's suite name).")] = None,
    report: Annotated[Optional[Path], typer.Option(
        "--report", help="With --to mlflow: a report file logged as an artifact of every cell's MLflow run.")] = None,
    replace: Annotated[bool, typer.Option(
        "--replace", help="With --to mlflow: delete and recreate an MLflow run whose parameters differ from its cell's.")] = False,
) -> None:
    """Export every cell as one table row (CSV or Parquet), or as one MLflow run (--to mlflow): one
    per cell, even when a run is reached twice or several runs hold the same cell (notes say which
    record was kept). Re-exporting to MLflow updates the cells' MLflow runs rather than adding more."""
    from ..errors import BeexError

    def note(text: str) -> None:
        typer.echo(f"note: {text}")

    if to is not None and to not in EXPORT_TO:
        raise BeexError(f"--to {to}: use one of {', '.join(EXPORT_TO)}")
    mlflow_flags = [flag for flag, v in (("--mlflow-uri", mlflow_uri), ("--experiment", experiment),
                                         ("--report", report), ("--replace", replace or None)) if v is not None]
    if to == "mlflow":
        if out is not None:
            raise BeexError("--out names a file: an MLflow export goes to --mlflow-uri")
        from ..results.mlflow_export import export_mlflow

        done = export_mlflow(results or [Path("results")], uri=mlflow_uri, experiment=experiment, report=report,
                             replace=replace, on_note=note)
        typer.echo(f"exported {done.cells} cell(s) to MLflow {done.uri}, experiment(s) {', '.join(done.experiments) or '—'}: "
                   f"{done.created} created, {done.updated} updated, {done.unchanged} unchanged, {done.replaced} replaced")
        return
    if mlflow_flags:
        raise BeexError(f"{mlflow_flags[0]} is an MLflow export option: add --to mlflow")
    if out is None:
        out = Path(f"results/results.{to or 'csv'}")
    elif to is not None and out.suffix != f".{to}":
        raise BeexError(f"--to {to} with --out {out}: name a .{to} file")
    from ..report.export import export_cells as do_export

    path = do_export(results or [Path("results")], out, on_note=note)
    typer.echo(f"exported {path}")
