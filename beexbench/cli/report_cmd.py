"""``beexbench report``."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, List, Optional

import typer


def report(
    results: Annotated[Optional[List[Path]], typer.Option("--results", help="Run folder(s) or folders of runs (repeatable).")] = None,
    out: Annotated[Path, typer.Option("--out", help="HTML file to write.")] = Path("reports/report.html"),
    tables: Annotated[Optional[Path], typer.Option("--tables", help="Folder for the Markdown/CSV tables (default: <out stem>-tables/ next to the HTML).")] = None,
) -> None:
    """Write one self-contained HTML report, plus its tables as Markdown and CSV, from saved results (no measuring)."""
    from ..report import build_report, default_tables_dir

    path = build_report(results or [Path("results")], out, tables_dir=tables)
    typer.echo(f"report: {path} ({path.stat().st_size / 1024:.0f} KiB)")
    folder = tables or default_tables_dir(path)
    typer.echo(f"tables: {folder} ({', '.join(sorted(p.name for p in folder.iterdir()))})")
