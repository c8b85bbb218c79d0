"""Traffic for the deployment scenarios (:mod:`beexbench.profilers.scenarios`): a workload, the
dynamic batcher of the Server scenario, and the pure-Python generator used where MLPerf LoadGen
(:mod:`beexbench.profilers._loadgen`) is not installed, labelled ``"python fallback (not LoadGen)"``.

A :class:`Workload` is model-agnostic: ``run(indices)`` serves those samples as one batch and
returns when they are done (a model's ``predict`` on the stacked rows, or a toy that sleeps).
Percentiles follow LoadGen's nearest-rank convention: the sorted latencies' ``⌊p·n⌋``-th value."""
from __future__ import annotations

import math
import queue
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from ..results.scenarios import FALLBACK


@dataclass(frozen=True)
class Workload:
    n: int  # samples the generator may index (0 .. n-1)
    run: Callable[[Sequence[int]], Any]  # serve these samples as one batch, synchronously


@dataclass(frozen=True)
class Limits:
    """How long one generator run lasts: at least ``min_seconds`` and ``min_queries``, cut at
    ``max_seconds`` (a run cut short of its minimums is INVALID, with the reason)."""

    min_seconds: float
    max_seconds: float
    min_queries: int


@dataclass
class Outcome:
    """One generator run, as the generator judged it."""

    achieved: float  # samples per second completed
    p50_ms: float | None
    p90_ms: float | None
    p99_ms: float | None
    n_queries: int
    duration_s: float
    valid: bool
    reasons: list[str] = field(default_factory=list)
    meets_bound: bool | None = None  # Server: p99 <= bound


def percentile(values: Sequence[float], p: float) -> float | None:
    """LoadGen's convention: the sorted values' ``⌊p·n⌋``-th (nearest rank, 0-based, capped)."""
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, int(math.floor(p * len(s))))]


class Batcher:
    """The Server scenario's dynamic batching: one serving thread takes the first waiting query,
    then more until ``max_batch`` or until ``wait_ms`` after that first one's arrival, and serves
    them as one batch (the model removes each row at its exit block). ``done(items)`` is called
    with each served batch's items."""

    def __init__(self, workload: Workload, max_batch: int, wait_ms: float, done: Callable[[list], None]):
        self.workload, self.max_batch, self.wait_s, self.done = workload, max_batch, wait_ms / 1e3, done
        self.queue: queue.Queue = queue.Queue()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._serve, name="beexbench-batcher", daemon=True)
        self.thread.start()

    def submit(self, item: tuple) -> None:
        """``item``: (sample index, arrival time (perf_counter), anything the caller needs back)."""
        self.queue.put(item)

    def close(self) -> None:
        self.queue.put(None)
        self.thread.join()
        if self.error is not None:
            raise self.error

    def _serve(self) -> None:
        stop = False
        while not stop:
            first = self.queue.get()
            if first is None:
                return
            batch = [first]
            deadline = first[1] + self.wait_s
            while len(batch) < self.max_batch:
                left = deadline - time.perf_counter()
                try:
                    item = self.queue.get(timeout=left) if left > 0 else self.queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                batch.append(item)
            try:
                self.workload.run([it[0] for it in batch])
            except BaseException as exc:  # noqa: BLE001 - raised again by close()
                self.error = exc
            self.done(batch)


def _own_checks(n: int, elapsed: float, limits: Limits) -> list[str]:
    out = []
    if elapsed < limits.min_seconds:
        out.append(f"min duration not satisfied: {elapsed:.2f} s of {limits.min_seconds:g} s (max_seconds cut it)")
    if n < limits.min_queries:
        out.append(f"min queries not satisfied: {n} of {limits.min_queries} (max_seconds cut it)")
    return out


class PythonGenerator:
    """The fallback generator: the same three scenarios, judged only by the run's own minimums and
    the latency bound (no early-stopping analysis: that is LoadGen's)."""

    label = FALLBACK

    def __init__(self, seed: int = 0):
        self.rng = random.Random(seed)

    def single_stream(self, w: Workload, limits: Limits, expected_ms: float) -> Outcome:
        lat: list[float] = []
        start = time.perf_counter()
        while True:
            t0 = time.perf_counter()
            w.run([self.rng.randrange(w.n)])
            lat.append((time.perf_counter() - t0) * 1e3)
            elapsed = time.perf_counter() - start
            if (elapsed >= limits.min_seconds and len(lat) >= limits.min_queries) or elapsed >= limits.max_seconds:
                break
        reasons = _own_checks(len(lat), elapsed, limits)
        return Outcome(len(lat) / elapsed, percentile(lat, .5), percentile(lat, .9), percentile(lat, .99), len(lat),
                       elapsed, not reasons, reasons)

    def offline(self, w: Workload, limits: Limits, batch_size: int, expected_sps: float) -> Outcome:
        total = max(limits.min_queries, int(math.ceil(expected_sps * limits.min_seconds * 1.1)))
        order = [self.rng.randrange(w.n) for _ in range(total)]
        done_at: list[float] = []
        start = time.perf_counter()
        for i in range(0, total, batch_size):
            if time.perf_counter() - start >= limits.max_seconds:
                break
            chunk = order[i:i + batch_size]
            w.run(chunk)
            done_at += [time.perf_counter() - start] * len(chunk)
        elapsed = time.perf_counter() - start
        reasons = _own_checks(len(done_at), elapsed, limits)
        lat = [t * 1e3 for t in done_at]
        return Outcome(len(done_at) / elapsed, percentile(lat, .5), percentile(lat, .9), percentile(lat, .99),
                       len(done_at), elapsed, not reasons, reasons)

    def server(self, w: Workload, limits: Limits, qps: float, bound_ms: float, max_batch: int, wait_ms: float) -> Outcome:
        total = max(limits.min_queries, int(math.ceil(qps * limits.min_seconds)))
        lat: list[float] = []
        lock = threading.Lock()

        def done(items: list) -> None:
            now = time.perf_counter()
            with lock:
                lat.extend((now - it[1]) * 1e3 for it in items)

        batcher = Batcher(w, max_batch, wait_ms, done)
        start = time.perf_counter()
        due, issued = start, 0
        try:
            while issued < total and due - start < limits.max_seconds:
                due += self.rng.expovariate(qps)
                pause = due - time.perf_counter()
                if pause > 0:
                    time.sleep(pause)
                batcher.submit((self.rng.randrange(w.n), due))  # latency from the scheduled arrival
                issued += 1
        finally:
            batcher.close()
        elapsed = time.perf_counter() - start
        p99 = percentile(lat, .99)
        reasons = _own_checks(len(lat), elapsed, limits)
        meets = p99 is not None and p99 <= bound_ms
        if not meets:
            reasons.append(f"latency constraint not met: p99 {p99:.3g} ms > bound {bound_ms:.3g} ms")
        return Outcome(len(lat) / elapsed, percentile(lat, .5), percentile(lat, .9), p99, len(lat), elapsed,
                       not reasons, reasons, meets)
