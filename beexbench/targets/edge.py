"""Edge devices emulated on the host: few threads, pinned cores, labelled ``emulated`` everywhere.

These bound the compute an edge board would give (thread count, no spill onto other cores); they do
not reproduce its clock, cache or memory bandwidth, and their energy is the host's. For a real
board, install beexbench on it and use its board target there (:mod:`.boards`: ``rpi4``, ``rpi5``,
``jetson-nano``, ``jetson-orin-nano``, or ``board`` for whichever it is; docs/EDGE.md).

A new profile is one registration::

    @register_target("my-board-like")
    def my_board_like(**o): return EdgeTarget("my-board-like", 4, mimics="My Board", **o)
"""
from __future__ import annotations

from beexbench.errors import BeexError
from beexbench.targets._host import PINNING_SUPPORTED
from beexbench.targets.base import usable_cpus
from beexbench.targets.cpu import CpuTarget


class EdgeTarget(CpuTarget):
    emulated = True

    def __init__(self, name: str, profile_threads: int, mimics: str = "", pin: bool = True,
                 threads: int | None = None, **overrides) -> None:
        asked, threads = threads, profile_threads
        if asked is not None and int(asked) != threads:
            raise BeexError(f"{name} emulates a {threads}-thread device, so its thread count is fixed: "
                            f"drop the threads option ({asked}) or use --target cpu with threads")
        cpus = usable_cpus()
        capped = min(int(threads), len(cpus))
        description = f"emulated on the host: {threads} thread(s)" + (f", like {mimics}" if mimics else "")
        # Inter-op threads are left alone: torch fixes them once per process, so setting them here
        # would leak into every later target. Pinning keeps that pool on the chosen cores anyway.
        super().__init__(threads=capped, name=name, description=description, **overrides)
        self.mimics = mimics
        self.requested_threads = int(threads)
        if capped < threads:
            self._note(f"asked for {threads} threads but only {len(cpus)} cores are usable: capped at {capped}")
        if pin and "cores" not in overrides:
            if PINNING_SUPPORTED:
                self.cores = tuple(cpus[:capped])
            else:
                self._note("core pinning unavailable on this platform: thread count limited, cores not pinned")

    def thread_settings(self) -> list[int]:
        """1 thread and the emulated device's count."""
        return sorted({1, self.threads})

    def describe(self) -> dict:
        out = super().describe()
        out.update(mimics=self.mimics or None, requested_threads=self.requested_threads)
        return out


def edge_1t(**overrides) -> EdgeTarget:
    """One thread pinned to one core: a single-core microcontroller-class CPU budget."""
    return EdgeTarget("edge-1t", 1, mimics="a single-core edge CPU", **overrides)


def edge_2t(**overrides) -> EdgeTarget:
    """Two threads pinned to two cores."""
    return EdgeTarget("edge-2t", 2, mimics="a dual-core edge CPU", **overrides)


def rpi4_like(**overrides) -> EdgeTarget:
    """Four threads (Raspberry Pi 4: 4x Cortex-A72), capped at the host's usable cores."""
    return EdgeTarget("rpi4-like", 4, mimics="Raspberry Pi 4 (4x Cortex-A72)", **overrides)
