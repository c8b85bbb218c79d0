"""``beexbench compare BASE NEW``: gate a change on measured differences (exit 1 on a regression)."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from . import _exit


def compare(
    base: Annotated[Path, typer.Argument(help="The base: a run folder or a folder of runs.")],
    new: Annotated[Path, typer.Argument(help="The new side: a run folder or a folder of runs.")],
    fail_on: Annotated[Optional[str], typer.Option("--fail-on", help="Regressions that fail the gate (exit 1) when significant and beyond the threshold, e.g. accuracy:-1pp,latency:+10%,size:+5%.")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", help="Also write the summary to this .md or .html file.")] = None,
    alpha: Annotated[float, typer.Option("--alpha", help="Significance level after correction.")] = 0.05,
    correction: Annotated[str, typer.Option("--correction", help="holm (default), bh or none: over every comparison made.")] = "holm",
    cross_host: Annotated[bool, typer.Option("--cross-host", help="Compare latency even when the machines or thread settings differ (each such delta says which).")] = False,
) -> None:
    """Compare every cell of NEW with the same cell of BASE: accuracy (points, exact McNemar when both keep
    per-sample outputs), latency and size (ratios), each with its interval and corrected p-value."""
    from .._io import atomic_write_text
    from ..compare import compare as do_compare
    from ..compare.render import html_page, markdown, summary_lines
    from ..errors import BeexError
    from ..stats import METHODS

    if correction not in METHODS:
        raise BeexError(f"--correction: use one of {', '.join(METHODS)}, not {correction!r}")
    if out is not None and out.suffix not in (".md", ".html"):
        raise BeexError(f"--out {out}: name a .md or .html file")
    result = do_compare(base, new, fail_on=fail_on, alpha=alpha, correction=correction, cross_host=cross_host)
    for line in summary_lines(result):
        typer.echo(line)
    typer.echo(markdown(result).split("\n\n", 2)[-1] if result.cells else "no cell in common")
    if out is not None:
        atomic_write_text(out, html_page(result) if out.suffix == ".html" else markdown(result))
        typer.echo(f"summary: {out}")
    if not result.ok:
        raise typer.Exit(_exit.CELLS_FAILED)
