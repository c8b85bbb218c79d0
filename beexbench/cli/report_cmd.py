"""``beexbench report``."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, List, Optional

import typer

DEFAULT_FIGURES_FOR = 20  # beexbench.report.build.DEFAULT_FIGURES_FOR (not imported: keeps --help fast)


def report(
    results: Annotated[Optional[List[Path]], typer.Option("--results", help="Run folder(s) or folders of runs (repeatable).")] = None,
    out: Annotated[Path, typer.Option("--out", help="HTML file to write (not inside a results folder).")] = Path("reports/report.html"),
    tables: Annotated[Optional[Path], typer.Option("--tables", help="Folder for the Markdown/CSV tables (default: <out stem>-tables/ next to the HTML).")] = None,
    figures_for: Annotated[int, typer.Option("--figures-for", metavar="N", help="Draw figures for the first N (task, target) sections; the others get tables and a place in one across-section figure, and the report says which.")] = DEFAULT_FIGURES_FOR,
    jobs: Annotated[Optional[int], typer.Option("--jobs", metavar="N", help="Worker processes for the sections (default: the usable cores when there is enough to do).")] = None,
) -> None:
    """Write one self-contained HTML report, plus its tables as Markdown and CSV, from saved results (no measuring)."""
    from ..report import build_report, default_tables_dir
    from ._progress import RichProgress

    with RichProgress() as progress:
        path = build_report(results or [Path("results")], out, tables_dir=tables, figures_for=figures_for, jobs=jobs,
                            progress=progress)
    typer.echo(f"report: {path} ({path.stat().st_size / 1024:.0f} KiB)")
    folder = tables or default_tables_dir(path)
    typer.echo(f"tables: {folder} ({', '.join(sorted(p.name for p in folder.iterdir()))})")
