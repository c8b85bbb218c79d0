"""The target interface: everything device-specific a profiler needs, in one place.

A :class:`Target` says where work runs (``device``), with how many threads, whether it is an
emulation of another device, and hands out the device's instruments: a :class:`Timer`, an
:class:`EnergyCounter` and a :class:`MemoryMeter`. Profilers only talk to these, so a new device
is one subclass, not edits scattered through ``profilers/``.
"""
from __future__ import annotations

import os
import sys
import time
from abc import ABC, abstractmethod
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Mapping, Protocol

import torch

from beexbench.errors import BeexError
from beexbench.targets import _host


class CounterUnavailable(Exception):
    """Raised by :meth:`Target.energy_meter` when the device has no readable energy counter.

    ``str(error)`` is the reason, recorded in the energy record's provenance inputs.
    """


class Timer(Protocol):
    """Times one call: ``elapsed_ms = timer(fn)``. ``name`` is recorded as provenance."""

    name: str

    def __call__(self, fn: Callable[[], Any]) -> float: ...


class EnergyCounter(Protocol):
    """A cumulative energy counter.

    ``read()`` returns joules per domain accumulated since the counter was opened (counter wrap
    already handled), so callers subtract two reads. ``total(reading)`` sums the domains that do
    not overlap. ``provenance`` is e.g. ``"measured:rapl"``.
    """

    provenance: str

    def read(self) -> dict[str, float]: ...

    def total(self, reading: Mapping[str, float]) -> float: ...


class MemoryMeter(Protocol):
    """Watches memory between ``start()`` and ``stop()``; ``stop()`` returns named figures in bytes
    (``peak_rss_bytes``, ``baseline_rss_bytes`` and, on devices with their own memory,
    ``device_peak_allocated_bytes``, ``device_baseline_allocated_bytes``) plus ``samples``."""

    method: str

    def start(self) -> None: ...

    def stop(self) -> dict[str, int]: ...


class PerfCounterTimer:
    """Host wall-clock timer around a synchronous call."""

    name = "perf_counter_ns"

    def __call__(self, fn: Callable[[], Any]) -> float:
        t0 = time.perf_counter_ns()
        fn()
        return (time.perf_counter_ns() - t0) / 1e6


class Target(ABC):
    """Where and how work runs. Subclasses set the attributes and may override the instruments.

    ``threads`` is the intra-op thread count applied by :meth:`activate`; ``cores`` (optional) are the
    logical CPUs the process is pinned to while active; ``interop_threads`` is applied once per
    process if torch still allows it.
    """

    name: str
    device: torch.device
    threads: int
    emulated: bool = False
    description: str = ""
    cores: tuple[int, ...] | None = None
    interop_threads: int | None = None
    # Whether "TDP share x this process's CPU time" is a fair energy estimate when no counter exists.
    # False where the work happens off the CPU (GPU), so the estimate would undercount.
    cpu_time_energy_estimate: bool = True
    # OpenMP wait policy of the isolated measurement processes (OMP_WAIT_POLICY, and ONNX Runtime's
    # intra-op spinning): ACTIVE, as latency-critical deployments run (threads spin between ops
    # instead of sleeping; with PASSIVE a 2-thread batch-1 call mostly measures thread wake-up).
    wait_policy: str = "ACTIVE"

    def __init__(self) -> None:
        # Notes about what could not be applied as asked (capped threads, no pinning, ...), kept for
        # describe() so results say what really happened.
        self.notes: list[str] = []

    # -- availability -----------------------------------------------------------------------
    def available(self) -> tuple[bool, str]:
        """``(True, "")`` when the target can run here, else ``(False, reason)``."""
        return True, ""

    def require_available(self) -> "Target":
        """Return self, or raise :class:`BeexError` with the reason it cannot run here."""
        ok, reason = self.available()
        if not ok:
            raise BeexError(reason)
        return self

    # -- execution context ------------------------------------------------------------------
    @contextmanager
    def activate(self) -> Iterator["Target"]:
        """Apply threads (and pinning) for the duration of the block, then restore them.

        Re-entrant: nested activations save and restore whatever was current. Raises
        :class:`BeexError` when the target cannot run here.
        """
        self.require_available()
        prev_threads = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        if self.interop_threads is not None:
            note = _host.set_interop_threads(self.interop_threads)
            if note:
                self._note(note)
        restore_affinity = None
        if self.cores is not None:
            restore_affinity, note = _host.pin_process(self.cores)
            if note:
                self._note(note)
        try:
            yield self
        finally:
            if restore_affinity is not None:
                restore_affinity()
            torch.set_num_threads(prev_threads)

    def thread_settings(self) -> list[int]:
        """The intra-op thread counts latency is measured at (each in its own process): the
        target's own count; CPU targets add 1 thread (see :class:`~beexbench.targets.cpu.CpuTarget`)."""
        return [self.threads]

    def with_threads(self, threads: int) -> "Target":
        """A copy of this target running ``threads`` intra-op threads (pinned cores trimmed to match)."""
        import copy

        out = copy.copy(self)
        out.notes = list(self.notes)
        out.threads = int(threads)
        if self.cores is not None:
            out.cores = tuple(self.cores[: max(1, int(threads))])
        return out

    def synchronize(self) -> None:
        """Wait for queued device work; a no-op on the CPU."""

    # -- instruments ------------------------------------------------------------------------
    def timer(self) -> Timer:
        return PerfCounterTimer()

    @abstractmethod
    def energy_meter(self) -> EnergyCounter:
        """An opened energy counter for this device, or raise :class:`CounterUnavailable`."""

    def memory_meter(self, interval_s: float = 0.001) -> MemoryMeter:
        return _host.RssSampler(interval_s)

    # -- provenance -------------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        """JSON-safe description for results."""
        ok, reason = self.available()
        return {
            "name": self.name,
            "device": str(self.device),
            "threads": self.threads,
            "thread_settings": self.thread_settings(),
            "wait_policy": self.wait_policy,
            "interop_threads": torch.get_num_interop_threads(),
            "emulated": self.emulated,
            "description": self.description,
            "pinned_cores": list(self.cores) if self.cores is not None else None,
            "pinning_supported": _host.PINNING_SUPPORTED,
            "platform": sys.platform,
            "available": ok,
            "unavailable_reason": reason or None,
            "notes": list(self.notes),
        }

    def _note(self, note: str) -> None:
        if note not in self.notes:
            self.notes.append(note)

    def __repr__(self) -> str:
        flag = ", emulated" if self.emulated else ""
        return f"<Target {self.name}: {self.device}, {self.threads} threads{flag}>"


def physical_cores() -> int:
    """Physical cores visible to this process's platform (logical count as a fallback)."""
    import psutil

    return psutil.cpu_count(logical=False) or os.cpu_count() or 1


def usable_cpus() -> list[int]:
    """Logical CPUs this process may run on, sorted (all of them where affinity is unknown)."""
    return _host.usable_cpus()
