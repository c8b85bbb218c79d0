"""A tiny progress protocol so core code stays usable without a terminal.

Core code calls ``progress.task(description, total)`` and ``advance()`` on the
handle it gets back; the CLI passes a Rich implementation, library users get
the silent default or pass their own.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Protocol


class TaskHandle(Protocol):
    def advance(self, n: float = 1, **fields: object) -> None: ...


class Progress(Protocol):
    def task(self, description: str, total: float | None = None): ...  # context manager -> TaskHandle

    def log(self, message: str) -> None: ...


class _NullHandle:
    def advance(self, n: float = 1, **fields: object) -> None:
        pass


class NullProgress:
    """The default: reports nothing."""

    @contextmanager
    def task(self, description: str, total: float | None = None) -> Iterator[TaskHandle]:
        yield _NullHandle()

    def log(self, message: str) -> None:
        pass


NULL_PROGRESS = NullProgress()
