"""Rich implementation of the progress protocol (the only place Rich meets core code)."""
from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn


class _Handle:
    def __init__(self, progress: Progress, task_id) -> None:
        self._p, self._id = progress, task_id

    def advance(self, n: float = 1, **fields: object) -> None:
        self._p.update(self._id, advance=n, info=" ".join(f"{k}={v}" for k, v in fields.items()))


class _LineHandle:
    """Without a terminal: remember the latest fields, print every 25%."""

    def __init__(self, console: Console, description: str, total: float | None) -> None:
        self.console, self.description, self.total, self.done, self.info, self._next = console, description, total, 0.0, "", 0.25

    def advance(self, n: float = 1, **fields: object) -> None:
        self.done += n
        self.info = " ".join(f"{k}={v}" for k, v in fields.items())
        if self.total and self.done / self.total >= self._next and self.done < self.total:
            self.console.print(f"{self.description}: {self.done:.0f}/{self.total:.0f} {self.info}", highlight=False)
            self._next += 0.25


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
        if self.console.is_terminal:
            self._progress.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.console.is_terminal:
            self._progress.stop()

    @contextmanager
    def task(self, description: str, total: float | None = None) -> Iterator[_Handle]:
        if not self.console.is_terminal:  # logs, CI: one line when a task starts and ends
            start = time.perf_counter()
            self.console.print(f"{description} ...", highlight=False)
            handle = _LineHandle(self.console, description, total)
            yield handle
            self.console.print(f"{description}: done in {time.perf_counter() - start:.1f} s {handle.info}", highlight=False)
            return
        task_id = self._progress.add_task(description, total=total, info="")
        try:
            yield _Handle(self._progress, task_id)
        finally:
            if total is None:
                self._progress.update(task_id, total=1, completed=1)
            self._progress.stop_task(task_id)

    def log(self, message: str) -> None:
        self.console.log(message) if self.console.is_terminal else self.console.print(message, highlight=False)
