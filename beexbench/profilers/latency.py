"""Latency: warm up, then time at least ``min_iters`` calls AND at least ``min_seconds``.

The target supplies the timer (``perf_counter_ns`` on CPU, CUDA events after synchronisation on GPU)
and the thread setting, so this module has no device code. Raw per-call values are kept.

Per-sample timing on real inputs (early-exit models at batch size 1, whose exit depth varies)::

    rec = measure_latency(lambda x: model(x), target="cpu", inputs=test_samples)
    # rec.values[i] is the latency of test_samples[i % len(test_samples)]
"""
from __future__ import annotations

import functools
import os
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

import torch

from beexbench.errors import BeexError
from beexbench.profilers._stats import bootstrap_median_ci, summarize
from beexbench.targets import Target, get_target

ISOLATED_ENV = "BEEXBENCH_ISOLATED"  # set to "1" in the measurement processes of beexbench.runner.isolate
WIDE_CI_PCT = 5.0  # warn when the 95% CI half-width of the median exceeds this share of the median
TINY_CALL_MS = 0.01  # below ~10 us per call the timer's own overhead matters


@dataclass(frozen=True)
class LatencyRecord:
    """Per-call latencies in milliseconds and their summary. Built with :meth:`from_values`."""

    values: tuple[float, ...]
    n: int
    median: float
    p90: float
    p99: float
    iqr: float
    mean: float
    std: float
    min: float
    max: float
    ci95_median: tuple[float, float]  # percentile bootstrap, 2000 resamples, seed 0
    ci_halfwidth_pct: float  # (hi - lo) / 2 / median * 100
    timer: str  # "perf_counter_ns" | "cuda_event"
    target: str = "cpu"
    emulated: bool = False
    threads: int | None = None
    warmup: int = 0
    batch_size: int | None = None
    seq_len: int | None = None
    n_inputs: int | None = None  # values[i] belongs to inputs[i % n_inputs] when inputs were given
    elapsed_s: float | None = None  # wall time of the timed loop
    stop_reason: str = ""  # "min_iters_and_min_seconds" | "max_seconds"
    warnings: tuple[str, ...] = ()
    unit: str = field(default="ms")
    wait_policy: str | None = None  # OMP_WAIT_POLICY of this process (None: the OpenMP default)
    isolated: bool = False  # measured in a fresh process set up for it (beexbench.runner.isolate)

    @classmethod
    def from_values(cls, values: Iterable[float], *, timer: str, warnings: Iterable[str] = (),
                    wide_ci_pct: float = WIDE_CI_PCT, **meta: Any) -> "LatencyRecord":
        """Summarise raw millisecond values; adds the noise warnings the numbers call for."""
        vals = tuple(float(v) for v in values)
        stats = summarize(vals)
        lo, hi = bootstrap_median_ci(vals)
        half_pct = (hi - lo) / 2 / stats["median"] * 100 if stats["median"] > 0 else float("inf")
        notes = list(warnings)
        if half_pct > wide_ci_pct:
            notes.append(f"wide CI: ±{half_pct:.1f}% of median; the machine may be noisy")
        if len(vals) < 10:
            notes.append(f"only {len(vals)} timed iterations; percentiles are rough")
        if stats["median"] < TINY_CALL_MS:
            notes.append(f"calls take ~{stats['median'] * 1e3:.1f} us; timer overhead is significant, "
                         "time a larger batch of work per call")
        return cls(values=vals, n=len(vals), **stats, ci95_median=(lo, hi), ci_halfwidth_pct=half_pct,
                   timer=timer, warnings=tuple(notes), **meta)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["values"] = list(self.values)
        d["ci95_median"] = list(self.ci95_median)
        d["warnings"] = list(self.warnings)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "LatencyRecord":
        d = dict(d)
        d["values"] = tuple(d["values"])
        d["ci95_median"] = tuple(d["ci95_median"])
        d["warnings"] = tuple(d.get("warnings", ()))
        return cls(**d)


def measure_latency(
    fn: Callable[..., Any],
    *,
    target: Target | str = "cpu",
    warmup: int = 10,
    min_iters: int = 30,
    min_seconds: float = 1.0,
    max_seconds: float | None = None,
    inputs: Sequence[Any] | None = None,
    batch_size: int | None = None,
    seq_len: int | None = None,
) -> LatencyRecord:
    """Time ``fn()`` (or ``fn(inputs[i % len(inputs)])``) on ``target``.

    Runs ``warmup`` untimed calls, then timed calls until both ``min_iters`` calls and
    ``min_seconds`` have passed, or until ``max_seconds`` (recorded in ``stop_reason``, with a
    warning when it cut the run short of ``min_iters``). ``batch_size`` and ``seq_len`` are metadata
    recorded with the result.
    """
    if warmup < 0 or min_iters < 1 or min_seconds < 0:
        raise BeexError("latency needs warmup >= 0, min_iters >= 1 and min_seconds >= 0")
    if max_seconds is not None and max_seconds <= 0:
        raise BeexError("max_seconds must be positive")
    if inputs is not None and len(inputs) == 0:
        raise BeexError("inputs is empty: give at least one sample or leave inputs unset")
    target = get_target(target).require_available()

    def call(i: int) -> Callable[[], Any]:
        return fn if inputs is None else functools.partial(fn, inputs[i % len(inputs)])

    warnings: list[str] = []
    with target.activate():
        timer = target.timer()
        for i in range(warmup):
            call(i)()
        target.synchronize()
        values: list[float] = []
        start = time.perf_counter()
        while True:
            values.append(timer(call(len(values))))
            elapsed = time.perf_counter() - start
            if len(values) >= min_iters and elapsed >= min_seconds:
                stop = "min_iters_and_min_seconds"
                break
            if max_seconds is not None and elapsed >= max_seconds:
                stop = "max_seconds"
                if len(values) < min_iters:
                    warnings.append(f"max_seconds={max_seconds:g} stopped the run after {len(values)} of "
                                    f"min_iters={min_iters} iterations")
                break
        threads = torch.get_num_threads()
    return LatencyRecord.from_values(
        values, timer=timer.name, warnings=warnings, target=target.name, emulated=target.emulated,
        threads=threads, warmup=warmup, batch_size=batch_size, seq_len=seq_len,
        n_inputs=None if inputs is None else len(inputs), elapsed_s=elapsed, stop_reason=stop,
        wait_policy=os.environ.get("OMP_WAIT_POLICY"), isolated=os.environ.get(ISOLATED_ENV) == "1",
    )


def latency_sweep(
    make_fn: Callable[[int, int | None], Callable[..., Any]],
    batch_sizes: Iterable[int],
    seq_lens: Iterable[int | None] = (None,),
    *,
    target: Target | str = "cpu",
    **kwargs: Any,
) -> list[LatencyRecord]:
    """``measure_latency(make_fn(batch_size, seq_len), ...)`` for every pair, batch size outermost.

    ``make_fn`` builds the inputs for that shape once, outside the timed region.
    """
    target = get_target(target).require_available()
    seq_lens = list(seq_lens)
    return [
        measure_latency(make_fn(bs, sl), target=target, batch_size=bs, seq_len=sl, **kwargs)
        for bs in batch_sizes
        for sl in seq_lens
    ]
