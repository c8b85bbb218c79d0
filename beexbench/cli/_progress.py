"""Rich implementation of the progress protocol (the only place Rich meets core code)."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn


class _Handle:
    def __init__(self, progress: Progress, task_id) -> None:
        self._p, self._id = progress, task_id

    def advance(self, n: float = 1, **fields: object) -> None:
        self._p.update(self._id, advance=n, info=" ".join(f"{k}={v}" for k, v in fields.items()))


class RichProgress:
    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self._progress = Progress(
            SpinnerColumn(),
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[info]}"),
            console=self.console,
            transient=False,
        )

    def __enter__(self) -> "RichProgress":
        self._progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self._progress.stop()

    @contextmanager
    def task(self, description: str, total: float | None = None) -> Iterator[_Handle]:
        task_id = self._progress.add_task(description, total=total, info="")
        try:
            yield _Handle(self._progress, task_id)
        finally:
            if total is None:
                self._progress.update(task_id, total=1, completed=1)
            self._progress.stop_task(task_id)

    def log(self, message: str) -> None:
        self._progress.console.log(message)
