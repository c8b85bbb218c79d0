"""The ``beexbench`` command: a thin typer shell over the Python API, one module per command."""
from __future__ import annotations

import errno
import sys

import typer

from .. import _signals
from . import _exit, compare_cmd, info_cmd, list_cmd, report_cmd, results_cmd, roofline_cmd, run_cmd, worker_cmd

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
app.command("compare")(compare_cmd.compare)
app.command("list")(list_cmd.list_)
app.command("info")(info_cmd.info)
app.command("roofline")(roofline_cmd.roofline)
app.command("worker")(worker_cmd.worker)
app.add_typer(results_cmd.app, name="results")

# what to do when the machine refuses a write
_WRITE_ADVICE = {
    errno.ENOSPC: "free space, or write elsewhere (--results DIR, --models-dir DIR, BEEXBENCH_CACHE)",
    errno.EDQUOT: "free space within your quota, or write elsewhere (--results DIR, --models-dir DIR, BEEXBENCH_CACHE)",
    errno.EROFS: "write to a writable folder (--results DIR, --models-dir DIR, BEEXBENCH_CACHE)",
    errno.EACCES: "fix its permissions, or use a folder you may write (--results DIR, --models-dir DIR, BEEXBENCH_CACHE)",
    errno.EPERM: "fix its permissions, or use a folder you may write (--results DIR, --models-dir DIR, BEEXBENCH_CACHE)",
}


def main(argv: list[str] | None = None) -> None:
    """Entry point: exits with the status of :func:`run_cli` (the table in ``_exit``)."""
    sys.exit(run_cli(argv))


def run_cli(argv: list[str] | None = None) -> int:
    """Run the command; user-caused failures print one line each, bugs keep their traceback.
    SIGTERM stops it as Ctrl-C does (``_signals``), with status 143."""
    args = sys.argv[1:] if argv is None else list(argv)
    command = next((a for a in args if not a.startswith("-")), "")
    with _signals.sigterm_as_interrupt():
        try:
            code = app(args=argv, prog_name="beexbench", standalone_mode=False)
        except BaseException as exc:  # noqa: BLE001 - _status re-raises what it does not know
            return _status(exc, command)
    if code == _exit.INTERRUPTED:  # typer >= 0.29 turns Ctrl-C (and so SIGTERM) into Exit(130) before we see it
        return _say_interrupted(command)
    return code if isinstance(code, int) else _exit.OK


def _status(exc: BaseException, command: str = "") -> int:
    """The exit status for ``exc``, after printing its one-line message; unknown errors re-raise."""
    from ..errors import BeexError, ConfigError

    if isinstance(exc, ConfigError):
        for problem in exc.problems:
            _error(problem)
        return _exit.USAGE
    if isinstance(exc, BeexError):
        _error(str(exc))
        return _exit.USAGE
    if isinstance(exc, (KeyboardInterrupt, typer.Abort)):  # older typer: Ctrl-C arrives as Abort
        return _say_interrupted(command)
    if isinstance(exc, typer.Exit):
        return exc.exit_code
    if isinstance(exc, click_exceptions()):
        if usage_line(exc):
            _error(usage_line(exc))
        return exc.exit_code
    if isinstance(exc, OSError) and exc.errno in _WRITE_ADVICE:
        _error(f"{exc.filename or 'a file'}: {exc.strerror}: {_WRITE_ADVICE[exc.errno]}")
        return _exit.WRITE_REFUSED
    raise exc


def click_exceptions() -> tuple[type, ...]:
    """``ClickException`` of whichever click typer runs on: the copy it bundles (typer >= 0.29)
    and, where installed, the ``click`` package (older typer)."""
    classes = {c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException"}
    try:
        import click

        classes.add(click.ClickException)
    except ImportError:  # pragma: no cover - typer >= 0.29 does not need it
        pass
    return tuple(classes)


def usage_line(exc) -> str:
    """A usage error as one line, pointing at the command's --help; "" when there is nothing
    left to say (``beexbench`` alone: its help is already printed)."""
    if type(exc).__name__ == "NoArgsIsHelpError":
        return ""
    message = " ".join(exc.format_message().split())
    ctx = getattr(exc, "ctx", None)
    return f"{message} (see `{ctx.command_path} --help`)" if ctx is not None else message


def _error(line: str) -> None:
    typer.echo(f"error: {line}", err=True)


def _say_interrupted(command: str) -> int:
    """One line for Ctrl-C (status 130) or SIGTERM (143); returns the status."""
    terminated = _signals.received()
    what = "terminated (SIGTERM)" if terminated else "interrupted"
    if command in ("run", "train"):
        typer.echo(f"{what}: finished cells are saved; run the same command again (or --resume RUN) to continue",
                   err=True)
    else:
        typer.echo(f"{what}: stopped before it finished", err=True)
    return _exit.TERMINATED if terminated else _exit.INTERRUPTED
