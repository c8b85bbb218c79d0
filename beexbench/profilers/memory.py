"""Peak memory of a block of work: host RSS always, device allocations where the target has them.

    with track_memory("cpu") as mem:
        model(x)
    mem.record.peak_rss_bytes

The RSS sampler is a background thread waking every ``interval_s`` (1 ms by default). It costs a
little CPU, on the measured core(s) too when the target pins them, so time latency in a separate
pass, or raise ``interval_s`` (e.g. 0.01) when memory is tracked around a latency loop.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from beexbench.profilers._stats import Pending
from beexbench.results.costs import Memory
from beexbench.targets import Target, get_target


MemoryRecord = Memory  # the profiler's record is the result's own section


@contextmanager
def track_memory(target: Target | str = "cpu", interval_s: float = 0.001) -> Iterator[Pending[MemoryRecord]]:
    """Measure peak memory of the block; ``.record`` is set when the block exits normally."""
    target = get_target(target).require_available()
    meter = target.memory_meter(interval_s)
    pending: Pending[MemoryRecord] = Pending("memory")
    meter.start()
    try:
        yield pending
    finally:
        figures = meter.stop()
    warnings = []
    if figures["samples"] < 3 and not figures.get("peak_from_getrusage"):
        warnings.append("the block was too short for RSS sampling; the peak may be missed")
    if figures.get("peak_from_getrusage"):
        method = meter.method + " (peak from getrusage)"
    else:
        method = meter.method
    pending._set(MemoryRecord(
        peak_rss_bytes=figures["peak_rss_bytes"],
        baseline_rss_bytes=figures["baseline_rss_bytes"],
        peak_rss_delta_bytes=figures["peak_rss_bytes"] - figures["baseline_rss_bytes"],
        device_peak_allocated_bytes=figures.get("device_peak_allocated_bytes"),
        device_baseline_allocated_bytes=figures.get("device_baseline_allocated_bytes"),
        device_peak_reserved_bytes=figures.get("device_peak_reserved_bytes"),
        method=method,
        samples=figures["samples"],
        target=target.name,
        warnings=tuple(warnings),
    ))
