"""``beexbench report``."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, List, Optional

import typer


def report(
    results: Annotated[Optional[List[Path]], typer.Option("--results", help="Run folder(s) or folders of runs (repeatable).")] = None,
    out: Annotated[Path, typer.Option("--out", help="HTML file to write.")] = Path("reports/report.html"),
) -> None:
    """Write one self-contained HTML report from saved results (no measuring)."""
    from ..report import build_report

    path = build_report(results or [Path("results")], out)
    typer.echo(f"report: {path} ({path.stat().st_size / 1024:.0f} KiB)")
