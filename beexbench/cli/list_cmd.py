"""``beexbench list``: registered models, tasks, targets, suites, executors and backbones."""
from __future__ import annotations

import json
from typing import Annotated, Optional

import typer

from ._options import Format

WHAT = ("models", "tasks", "targets", "suites", "executors", "backbones")


def list_(
    what: Annotated[Optional[str], typer.Argument(
        help="models, tasks, targets, suites, executors or backbones (default: all).")] = None,
    fmt: Format = "text",
) -> None:
    """Show the registered models, tasks, targets, suites, executors and backbones."""
    from ..errors import BeexError

    if what is not None and what not in WHAT:
        raise BeexError(f"cannot list '{what}': use one of {', '.join(WHAT)}")
    data = {w: _collect(w) for w in (WHAT if what is None else (what,))}
    if fmt == "json":
        typer.echo(json.dumps(data, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    for kind, rows in data.items():
        table = Table(title=kind)
        table.add_column("name", style="bold")
        table.add_column("origin")
        if kind == "models":
            table.add_column("role")
        table.add_column("description")
        for row in rows:
            role = [row.get("role", "")] if kind == "models" else []
            table.add_row(row["name"], row.get("origin", ""), *role, row.get("description", ""))
        console.print(table)


def _collect(what: str) -> list[dict]:
    if what == "models":
        from ..adapters.registry import ADAPTERS, list_models

        return [{"name": name, "origin": ADAPTERS.entry(name).origin, "description": _model_line(name), "role": _model_role(name)}
                for name in list_models()]
    if what == "tasks":
        from ..data.tasks import list_tasks

        return [_task_row(n) for n in list_tasks()]
    if what == "targets":
        from ..targets import get_target, list_targets

        out = []
        for n in list_targets():
            t = get_target(n)
            ok, reason = t.available()
            out.append({"name": n, "origin": "emulated" if t.emulated else "board" if hasattr(t, "on_board") else "native",
                        "description": t.description + ("" if ok else f" [unavailable: {reason}]")})
        return out
    if what in ("executors", "backbones"):
        return _registry_rows(what)
    from ..config import suite_names

    return [{"name": n, "origin": "builtin", "description": ""} for n in suite_names()]


def _model_line(name: str) -> str:
    """The first line of the model's docstring; a plugin that fails to load is listed, not fatal."""
    from ..adapters.registry import get_adapter_class
    from ..errors import BeexError

    try:
        doc = (get_adapter_class(name).__doc__ or "").strip().splitlines()
    except BeexError as exc:
        return f"[broken: {exc}]"
    return doc[0] if doc else ""


def _task_row(name: str) -> dict:
    """A task's source and description; a plugin task that fails to load is listed as broken in
    one line (with where it comes from), not fatal."""
    from ..data.registry import TASKS, get_spec
    from ..errors import BeexError

    try:
        spec = get_spec(name)
    except BeexError as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return {"name": name, "origin": TASKS.entry(name).origin, "description": f"[broken: {first}]"}
    return {"name": name, "origin": spec.source, "description": spec.description}


def _model_role(name: str) -> str:
    """The role the model declares (beexbench.adapters.roles); "" for a plugin that fails to load."""
    from ..adapters.registry import get_adapter_class
    from ..errors import BeexError

    try:
        return str(get_adapter_class(name).role)
    except BeexError:
        return ""


def _registry_rows(what: str) -> list[dict]:
    """Executors (their options) or backbones (their origin); one that fails to load is listed broken."""
    from ..backbones.sources import BACKBONES
    from ..errors import BeexError
    from ..runner.executors import EXECUTORS, takes_options

    registry = EXECUTORS if what == "executors" else BACKBONES
    rows = []
    for name in registry.names():
        try:
            if what == "executors":
                description = "options: " + (", ".join(takes_options(name)) or "none")
            else:
                description = BACKBONES.get(name).origin
        except BeexError as exc:
            description = f"[broken: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}]"
        rows.append({"name": name, "origin": registry.entry(name).origin, "description": description})
    return rows
