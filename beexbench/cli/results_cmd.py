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


@app.command("export")
def export(
    results: Roots = None,
    out: Annotated[Path, typer.Option("--out", help="A .csv or .parquet file.")] = Path("results/results.csv"),
) -> None:
    """Export every cell as one table row (CSV or Parquet): one row per cell, even when a run is
    reached twice or several runs hold the same cell (notes say which record was kept)."""
    from ..report.export import export_cells as do_export

    path = do_export(results or [Path("results")], out, on_note=lambda note: typer.echo(f"note: {note}"))
    typer.echo(f"exported {path}")
