"""The end-of-run summary table (text) or JSON for scripts."""
from __future__ import annotations

import json

import typer
from rich.console import Console
from rich.table import Table


def failed_line(summary) -> str:
    """One line naming the failed cells and what to do (the exit status is then 1)."""
    cells = ", ".join(key.slug for key, _ in summary.failed)
    return (f"{len(summary.failed)} cell(s) failed: {cells}; the others are saved: fix the cause (see the summary) and run "
            f"`beexbench run --resume {summary.run_dir}` to re-run only the failed ones")


def print_summary(summary, fmt: str = "text") -> None:
    from ..results.store import RunDir

    records = list(RunDir(summary.run_dir).cells())
    if fmt == "json":
        typer.echo(json.dumps({
            "run_dir": str(summary.run_dir),
            "written": [k.slug for k in summary.written],
            "skipped": [k.slug for k in summary.skipped],
            "failed": [{"cell": k.slug, "error": e} for k, e in summary.failed],
            "unsupported": [{"cell": k.slug, "reason": e} for k, e in summary.unsupported],
            "seconds": summary.seconds,
        }, indent=2))
        return
    table = Table(title=f"beexbench run {summary.run_dir.name} ({summary.seconds:.0f} s)")
    for col in ("model", "task", "target", "score", "KiB", "MACs", "BOPs", "ms bs=1", "exit"):
        table.add_column(col, justify="left" if col in ("model", "task", "target") else "right")
    for r in records:
        m = r.metrics
        if r.status != "ok":
            table.add_row(r.key.model, r.key.task, r.key.target, f"[red]failed: {r.error}", "", "", "", "", "")
            continue
        ops, value, exits = m.ops.per_sample_mean, m.accuracy.value, m.exits
        table.add_row(
            r.key.model, r.key.task, r.key.target,
            ("undefined" if value is None else f"{value:.4f}") + (" r" if m.accuracy.metric == "pearson_r" else ""),
            f"{m.size.total_bits / 8 / 1024:.1f}",
            f"{ops.non_binary_macs / 1e6:.2f} M",
            f"{ops.bops / 1e6:.2f} M",
            f"{m.batch1.median:.3f} @{m.batch1.threads}t",
            f"{exits.mean_exit_block:.2f}/{exits.n_blocks}" if exits else "—",
        )
    console = Console()
    if not console.is_terminal:
        console = Console(width=160)
    console.print(table)
    console.print("score: test accuracy with exits (r: Pearson r, regression tasks); KiB: model bits / 8192; MACs, BOPs: mean per sample as run; "
                  "ms bs=1: median latency at batch size 1 at the fastest thread setting (@Nt; all settings are in the report); exit: mean exit block / blocks", highlight=False)
    typer.echo(f"results: {summary.run_dir}  (next: beexbench report --results {summary.run_dir.parent})")
