"""Host (CPU-side) machinery shared by all targets: thread pinning, inter-op threads, RSS sampling.

Portable: Linux gets real per-thread pinning; platforms without ``os.sched_setaffinity`` (macOS,
Windows) degrade to "threads limited, not pinned" and say so in a note.
"""
from __future__ import annotations

import os
import sys
import threading
import time
from typing import Callable, Iterable

import psutil
import torch

PINNING_SUPPORTED = hasattr(os, "sched_setaffinity") and hasattr(os, "sched_getaffinity")


def usable_cpus() -> list[int]:
    """Logical CPUs this process may run on (all of them where affinity cannot be queried)."""
    if PINNING_SUPPORTED:
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def _thread_ids() -> list[int]:
    """All thread ids of this process on Linux (pinning only the caller would miss torch's pool)."""
    try:
        return [int(t) for t in os.listdir("/proc/self/task")]
    except OSError:
        return [0]


def pin_process(cores: Iterable[int]) -> tuple[Callable[[], None] | None, str]:
    """Pin every thread of this process to ``cores``.

    Returns ``(restore, note)``: ``restore()`` puts back the previous affinity (``None`` when
    nothing was changed) and ``note`` explains why pinning was skipped ("" when it worked).
    """
    cores = set(cores)
    if not PINNING_SUPPORTED:
        return None, f"core pinning unavailable on {sys.platform}: thread count limited, cores not pinned"
    previous: dict[int, set[int]] = {}
    main_previous = os.sched_getaffinity(0)
    try:
        for tid in _thread_ids():
            try:
                previous[tid] = os.sched_getaffinity(tid)
                os.sched_setaffinity(tid, cores)
            except ProcessLookupError:  # thread ended meanwhile
                continue
    except OSError as err:
        _restore(previous, main_previous)
        return None, f"core pinning to {sorted(cores)} failed ({err}); thread count limited only"

    def restore() -> None:
        _restore(previous, main_previous)

    return restore, ""


def _restore(previous: dict[int, set[int]], default: set[int]) -> None:
    # Threads born while pinned inherited the pinned mask: give them the main thread's old mask.
    for tid in _thread_ids():
        try:
            os.sched_setaffinity(tid, previous.get(tid, default))
        except OSError:
            continue


def set_interop_threads(n: int) -> str:
    """Set torch's inter-op pool size if torch still allows it; return a note when it could not."""
    current = torch.get_num_interop_threads()
    if current == n:
        return ""
    try:
        torch.set_num_interop_threads(n)
    except RuntimeError:  # torch only allows this once, before any inter-op parallel work
        return f"inter-op threads already fixed at {current} in this process (wanted {n})"
    return ""


def _ru_maxrss_bytes() -> int | None:
    try:
        import resource
    except ImportError:  # Windows
        return None
    value = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(value if sys.platform == "darwin" else value * 1024)  # bytes on macOS, KiB elsewhere


class RssSampler:
    """Peak resident set size of this process between ``start()`` and ``stop()``.

    A background thread samples RSS every ``interval_s``; ``getrusage``'s lifetime peak is used as
    well when it rose during the window (it sees spikes shorter than the sampling interval).
    """

    def __init__(self, interval_s: float = 0.001) -> None:
        self.interval_s = interval_s
        self.method = f"psutil RSS sampled every {interval_s * 1e3:g} ms + getrusage ru_maxrss"
        self._proc = psutil.Process()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._peak = 0
        self._samples = 0

    def _sample(self) -> None:
        rss = self._proc.memory_info().rss
        self._samples += 1
        if rss > self._peak:
            self._peak = rss

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            time.sleep(self.interval_s)

    def start(self) -> None:
        self._ru_before = _ru_maxrss_bytes()
        self._baseline = self._proc.memory_info().rss
        self._peak, self._samples = self._baseline, 0
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="beexbench-rss", daemon=True)
        self._thread.start()

    def stop(self) -> dict[str, int]:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._sample()
        peak, from_rusage = self._peak, 0
        ru_after = _ru_maxrss_bytes()
        if ru_after is not None and self._ru_before is not None and ru_after > self._ru_before:
            if ru_after > peak:
                peak, from_rusage = ru_after, 1
        return {
            "baseline_rss_bytes": self._baseline,
            "peak_rss_bytes": peak,
            "samples": self._samples,
            "peak_from_getrusage": from_rusage,
        }
