"""The deployment scenarios (SingleStream, Offline, Server; issue 31) of one workload, judged by
MLPerf LoadGen where it is installed, else by the labelled Python fallback
(:mod:`beexbench.profilers._traffic`). Model-agnostic: a :class:`~._traffic.Workload` serves a list
of sample indices as one batch (:mod:`beexbench.runner.scenarios` makes one of a model).

* SingleStream: one LoadGen SingleStream test; its p90 (nearest rank) and verdict.
* Offline: a short search (each batch size of ``offline_batch_sizes`` timed for a fraction of a
  second, not judged), then one LoadGen Offline test at the best batch size.
* Server: bisection on the target QPS between a quarter of the capacity (the Offline figure, or
  the search's) and the capacity; each probe is a LoadGen Server test whose latency constraint
  (LoadGen's p99 check against the bound) decides the next step; the result is the highest probe
  LoadGen judged VALID (else the highest that met the bound, INVALID with its reasons), and
  ``bound_qps`` the highest that met the bound. The bound is ``server_bound_ms``, else ``server_bound_p90_multiple`` x
  the SingleStream p90 (or, without SingleStream, the batch-1 loop's p90).

beexbench's own reasons join LoadGen's in every verdict (``own_reasons``, and a loaded machine:
a 1-minute load average above the usable cores while the scenarios ran)."""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Callable, Sequence

from ..results.scenarios import NOT_OFFICIAL, Probe, ScenarioResult, Scenarios
from ._traffic import Limits, Outcome, PythonGenerator, Workload

SEARCH_SECONDS = 0.25  # each Offline search point
LOW_FRACTION = 0.25  # the Server search starts at this share of the capacity
STEP_DOWNS = 4  # ... and halves it at most this often while even the lowest probe misses the bound
WAIT_SHARE = 0.25  # the batching wait window is at most this share of the bound (a lone query waits it out)
# the default bound is never below this: a Python-served SUT's hand-offs put about 1 ms in the p99 whatever the
# model (a 0.05 ms model's p99 was 1.4 ms at 1% load), so a bound of 5 x a sub-millisecond p90 would judge the
# harness, not the model (MLPerf's Server bounds are absolute too: 15 ms for ResNet-50, 130 ms for BERT)
SERVER_BOUND_FLOOR_MS = 10.0


@dataclass(frozen=True)
class ScenarioPlan:
    scenarios: tuple[str, ...]
    min_seconds: float = 1.0
    max_seconds: float = 10.0
    min_queries: int = 64
    server_min_queries: int = 500
    offline_batch_sizes: tuple[int, ...] = (1, 8, 32)
    server_bound_ms: float | None = None
    server_bound_p90_multiple: float = 5.0
    server_max_batch: int = 8
    server_wait_ms: float = 1.0
    server_probes: int = 6


def make_generator(prefer_loadgen: bool = True):
    """LoadGen when it is installed (and wanted), else the labelled Python fallback."""
    from . import _loadgen

    if prefer_loadgen and _loadgen.available():
        return _loadgen.LoadGenGenerator()
    return PythonGenerator()


def load_reasons(load: Callable[[], float] | None = None, cores: int | None = None) -> list[str]:
    """A loaded machine: the 1-minute load average above the usable cores."""
    try:
        value = (load or (lambda: os.getloadavg()[0]))()
    except (OSError, AttributeError):
        return []
    cores = cores or (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
    return [f"loaded machine: 1-minute load average {value:.2f} on {cores} usable core(s)"] if value > cores else []


def _verdict(valid: bool, reasons: Sequence[str], own: Sequence[str]) -> tuple[str, tuple[str, ...]]:
    reasons = tuple(dict.fromkeys([*reasons, *own]))
    if not valid and not reasons:
        reasons = ("the generator reported INVALID without a reason",)
    return ("VALID" if valid and not own else "INVALID"), reasons


def _probe(o: Outcome, *, batch_size=None, qps=None, judged=True) -> Probe:
    validity, reasons = _verdict(o.valid, o.reasons, ()) if judged else ("search", ())
    return Probe(batch_size=batch_size, target_qps=qps, achieved=o.achieved, p90_ms=o.p90_ms, p99_ms=o.p99_ms,
                 n_queries=o.n_queries, duration_s=o.duration_s, validity=validity, reasons=reasons,
                 meets_bound=o.meets_bound)


def offline_search(w: Workload, sizes: Sequence[int], seconds: float = SEARCH_SECONDS) -> list[Outcome]:
    """Each batch size timed for about ``seconds`` (not judged): its samples per second."""
    out = []
    for bs in sizes:
        idx = [i % w.n for i in range(bs)]
        w.run(idx)  # warm-up
        n, start = 0, time.perf_counter()
        while True:
            w.run(idx)
            n += bs
            elapsed = time.perf_counter() - start
            if elapsed >= seconds and n >= 2 * bs:
                break
        out.append(Outcome(n / elapsed, None, None, None, n, elapsed, True))
    return out


def run_scenarios(w: Workload, plan: ScenarioPlan, *, generator=None, batch1_p90_ms: float | None = None,
                  own_reasons: Sequence[str] = (), single_stream_reasons: Sequence[str] = (),
                  threads: int | None = None, load: Callable[[], float] | None = None) -> Scenarios:
    """Every scenario of ``plan`` on ``w``; ``own_reasons``: beexbench's reasons against every
    verdict, ``single_stream_reasons`` against SingleStream's alone (the batch-1 interval)."""
    gen = generator or make_generator()
    limits = Limits(plan.min_seconds, plan.max_seconds, plan.min_queries)
    own = [*own_reasons, *load_reasons(load)]
    results: list[ScenarioResult] = []
    ss_p90 = None
    if "single-stream" in plan.scenarios:
        o = gen.single_stream(w, limits, batch1_p90_ms or 1.0)
        validity, reasons = _verdict(o.valid, o.reasons, [*own, *single_stream_reasons])
        ss_p90 = o.p90_ms
        results.append(ScenarioResult(scenario="single-stream", value=o.p90_ms, unit="ms", validity=validity,
                                      reasons=reasons, p90_ms=o.p90_ms, p99_ms=o.p99_ms, n_queries=o.n_queries,
                                      duration_s=o.duration_s, batch_size=1))
    capacity = None
    if "offline" in plan.scenarios or "server" in plan.scenarios:
        sizes = [b for b in plan.offline_batch_sizes if b <= w.n] or [1]
        search = offline_search(w, sizes)
        best = max(range(len(sizes)), key=lambda i: search[i].achieved)
        capacity = search[best].achieved
        if "offline" in plan.scenarios:
            o = gen.offline(w, limits, sizes[best], capacity)
            validity, reasons = _verdict(o.valid, o.reasons, own)
            capacity = o.achieved or capacity
            results.append(ScenarioResult(
                scenario="offline", value=o.achieved, unit="samples/s", validity=validity, reasons=reasons,
                p90_ms=o.p90_ms, p99_ms=o.p99_ms, n_queries=o.n_queries, duration_s=o.duration_s, batch_size=sizes[best],
                search=tuple(_probe(s, batch_size=b, judged=False) for b, s in zip(sizes, search))))
    if "server" in plan.scenarios:
        results.append(server_search(w, plan, gen, capacity, ss_p90, batch1_p90_ms, own))
    if load is None:
        own_after = load_reasons()
        if own_after and not any(r.startswith("loaded machine") for r in own):
            results = [_add_reasons(r, own_after) for r in results]
    return Scenarios(generator=gen.label, official=False, note=NOT_OFFICIAL, threads=threads,
                     min_seconds=plan.min_seconds, min_queries=plan.min_queries, results=tuple(results))


def _add_reasons(r: ScenarioResult, extra: list[str]) -> ScenarioResult:
    import dataclasses

    return dataclasses.replace(r, validity="INVALID", reasons=tuple(dict.fromkeys([*r.reasons, *extra])))


def server_search(w: Workload, plan: ScenarioPlan, gen, capacity: float, ss_p90: float | None,
                  batch1_p90: float | None, own: Sequence[str]) -> ScenarioResult:
    """The highest QPS whose p99 stays under the bound, by bisection between LOW_FRACTION x and 1 x
    the capacity (the low end halved up to STEP_DOWNS times while it misses the bound); the batching
    wait window at most WAIT_SHARE of the bound; each probe judged by the generator."""
    if plan.server_bound_ms is not None:
        bound, source = plan.server_bound_ms, "latency.server_bound_ms"
    else:
        base, what = (ss_p90, "SingleStream p90") if ss_p90 is not None else (batch1_p90, "batch-1 loop p90")
        if base is None:
            raise RuntimeError("the Server bound needs a SingleStream or batch-1 p90, or latency.server_bound_ms")
        bound, source = plan.server_bound_p90_multiple * base, f"{plan.server_bound_p90_multiple:g} x the {what} ({base:.3g} ms)"
        if bound < SERVER_BOUND_FLOOR_MS:
            bound, source = SERVER_BOUND_FLOOR_MS, f"the {SERVER_BOUND_FLOOR_MS:g} ms floor ({source} is {bound:.3g} ms)"
    limits = Limits(plan.min_seconds, plan.max_seconds, plan.server_min_queries)
    wait_ms = min(plan.server_wait_ms, WAIT_SHARE * bound)  # a 1 ms window cannot meet a 0.4 ms bound
    probes: list[Probe] = []

    def probe(qps: float) -> Probe:
        o = gen.server(w, limits, qps, bound, plan.server_max_batch, wait_ms)
        p = _probe(o, qps=qps)
        probes.append(p)
        return p

    lo, hi = LOW_FRACTION * capacity, capacity
    first = probe(lo)
    for _ in range(STEP_DOWNS):  # even the lowest missed: step down before giving up
        if first.meets_bound:
            break
        lo, hi = lo / 2, lo
        first = probe(lo)
    if first.meets_bound:
        for _ in range(plan.server_probes):
            mid = (lo + hi) / 2
            if probe(mid).meets_bound:
                lo = mid
            else:
                hi = mid
    met = [p for p in probes if p.meets_bound]
    valid = [p for p in met if p.validity == "VALID"]
    # the highest probe LoadGen judged VALID; else the highest that met the bound, INVALID with its reasons
    best = max(valid or met, key=lambda p: p.target_qps) if met else None
    common = dict(scenario="server", unit="queries/s", batch_size=plan.server_max_batch, bound_ms=bound,
                  bound_source=source, wait_ms=wait_ms, search=tuple(probes),
                  bound_qps=max(p.target_qps for p in met) if met else None)
    if best is None:
        why = (f"no probed QPS kept p99 under the bound: the lowest, {first.target_qps:.4g} QPS, had p99 "
               f"{first.p99_ms if first.p99_ms is not None else float('nan'):.3g} ms > {bound:.3g} ms")
        return ScenarioResult(value=None, validity="INVALID", reasons=tuple(dict.fromkeys((why, *first.reasons, *own))),
                              p90_ms=first.p90_ms, p99_ms=first.p99_ms, n_queries=first.n_queries,
                              duration_s=first.duration_s, **common)
    validity, reasons = _verdict(best.validity == "VALID", best.reasons, own)
    return ScenarioResult(value=best.target_qps, validity=validity, reasons=reasons, p90_ms=best.p90_ms,
                          p99_ms=best.p99_ms, n_queries=best.n_queries, duration_s=best.duration_s, **common)
