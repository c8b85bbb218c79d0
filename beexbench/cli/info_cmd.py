"""``beexbench info TASK``: a task's dataset card."""
from __future__ import annotations

import json
from typing import Annotated

import typer

from ._options import Format


def info(
    task: Annotated[str, typer.Argument(help="A task name (see `beexbench list tasks`) or a dataset spec.")],
    fmt: Format = "text",
) -> None:
    """Show a task's dataset card: source package, version, checksum, license, sizes, labels."""
    from ..data import task_info

    card = task_info(task).to_dict()
    if fmt == "json":
        typer.echo(json.dumps(card, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"task {card['name']}", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value")
    for key, value in card.items():
        table.add_row(key, ", ".join(f"{k}: {v}" for k, v in value.items()) if isinstance(value, dict) else str(value))
    Console().print(table)
