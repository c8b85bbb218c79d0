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
from typing import Any, Callable, Iterable, Sequence

import torch

from beexbench import settings
from beexbench.errors import BeexError
from beexbench.targets import Target, get_target

from beexbench.results.costs import TINY_CALL_MS, WIDE_CI_PCT, Latency  # noqa: F401 (re-exported)

ISOLATED_ENV = settings.ISOLATED  # set to "1" in the measurement processes of beexbench.runner.isolate

# The profiler's record is the result's own section (one type from the timed loop to the file)
LatencyRecord = Latency


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
) -> Latency:
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
    return Latency.from_values(
        values, timer=timer.name, warnings=warnings, target=target.name, emulated=target.emulated,
        threads=threads, warmup=warmup, batch_size=batch_size, seq_len=seq_len,
        n_inputs=None if inputs is None else len(inputs), elapsed_s=elapsed, stop_reason=stop,
        wait_policy=os.environ.get("OMP_WAIT_POLICY"), isolated=settings.isolated(),
    )


def latency_sweep(
    make_fn: Callable[[int, int | None], Callable[..., Any]],
    batch_sizes: Iterable[int],
    seq_lens: Iterable[int | None] = (None,),
    *,
    target: Target | str = "cpu",
    **kwargs: Any,
) -> list[Latency]:
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
