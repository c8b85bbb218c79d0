"""``beexbench roofline``: this host's per-path peak throughput (measured once per host, cached)."""
from __future__ import annotations

import json
from typing import Annotated

import typer

from ._options import Format


def roofline(
    refresh: Annotated[bool, typer.Option("--refresh", help="Measure again (a few seconds), replacing the cached figures.")] = False,
    fmt: Format = "text",
) -> None:
    """Show this host's roofline: fp32 FMA, bf16, int8 and XOR-popcount peaks (1 thread and all cores)
    and a streaming-read bandwidth; measured on first use (run it on a quiet machine), then cached."""
    from ..errors import BeexError
    from ..profilers.roofline import cache_file, host_roofline
    from ..report.roofline import bounds_rows

    if fmt not in ("text", "json"):
        raise BeexError(f"--format must be text or json, got {fmt!r}")
    r = host_roofline(refresh=refresh)
    if fmt == "json":
        typer.echo(json.dumps(r.to_dict(), indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    load = f", load average {r.load_avg_1m:.2f}" if r.load_avg_1m is not None else ""
    table = Table(title=f"roofline of {r.cpu} ({r.threads_all} usable cores; measured {r.measured_at}{load})")
    for col in ("path", "instructions", "1 thread", f"all cores ({r.threads_all})", "spread 1t/all"):
        table.add_column(col, style="bold" if col == "path" else None)
    for row in bounds_rows(r.summary()):
        table.add_row(*row)
    console = Console()
    console.print(table)
    console.print(f"key {r.key}; cached in {cache_file(r.key)} (--refresh to measure again)")
