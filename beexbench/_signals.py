"""SIGTERM stops a command as Ctrl-C does.

``kill``, systemd, Slurm, ``timeout`` and ``docker stop`` end a process with SIGTERM, whose default
action kills Python on the spot: no ``finally`` runs, so a measuring worker (a child process) and
its temporary folder outlive the run. While a command runs, SIGTERM instead raises
:class:`Terminated` (a ``KeyboardInterrupt``) where the command is, so every path that cleans up
after Ctrl-C runs for it too: the worker is killed, the folder removed, finished cells kept. The
command then exits 143 (128 + 15, what shells report for SIGTERM) with one line saying so. A second
SIGTERM, during that clean-up, ends the process at once (the default action).

Code that lets a library install its own SIGTERM handler (``ray.init`` installs ``sys.exit(15)``)
calls :func:`reclaim` afterwards."""
from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Iterator


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived: stop as Ctrl-C stops (a ``KeyboardInterrupt``, so the same clean-up runs)."""


_state = {"received": False, "active": False}


def received() -> bool:
    """Whether SIGTERM arrived during the current :func:`sigterm_as_interrupt` block."""
    return _state["received"]


def _on_sigterm(signum, frame) -> None:
    _state["received"] = True
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM is not held up by the clean-up
    raise Terminated()


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`Terminated` in the main thread. Left alone where
    this is not the main thread (signals go only there) or where SIGTERM is not at its default
    (someone ignores or handles it on purpose)."""
    _state["received"] = False
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield
        return
    signal.signal(signal.SIGTERM, _on_sigterm)
    _state["active"] = True
    try:
        yield
    finally:
        _state["active"] = False
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def reclaim() -> None:
    """Within :func:`sigterm_as_interrupt` (and before any SIGTERM), take SIGTERM back from a
    library that replaced the handler; elsewhere nothing."""
    if _state["active"] and not _state["received"] and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _on_sigterm)
