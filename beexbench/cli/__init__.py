"""The ``beexbench`` command: a thin typer shell over the Python API, one module per command."""
from __future__ import annotations

import sys

import typer

from . import info_cmd, list_cmd, report_cmd, results_cmd, run_cmd

app = typer.Typer(
    name="beexbench",
    help="Train BEExformer and its rivals, measure them honestly, and report.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command("run")(run_cmd.run)
app.command("train")(run_cmd.train)
app.command("report")(report_cmd.report)
app.command("list")(list_cmd.list_)
app.command("info")(info_cmd.info)
app.add_typer(results_cmd.app, name="results")


def main(argv: list[str] | None = None) -> None:
    """Entry point: user errors print one line and exit 2; nothing else is swallowed."""
    from ..errors import BeexError

    try:
        app(args=argv, standalone_mode=False)
    except BeexError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.echo("interrupted: finished cells are saved; re-run the same command with --resume to continue", err=True)
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except Exception as exc:  # click usage errors
        import click

        if isinstance(exc, click.exceptions.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        if isinstance(exc, click.exceptions.Abort):
            sys.exit(1)
        raise
