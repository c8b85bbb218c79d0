"""``metrics.scenarios``: deployment scenarios as MLPerf Inference defines them (issue 31).

* **SingleStream**: one query at a time, the next issued when the last completes; the figure is the
  90th-percentile latency (LoadGen's nearest-rank convention: the sorted latencies' ``⌊0.9·n⌋``-th).
* **Offline**: every query at once; the figure is samples per second at the best batch size of a
  short search (``batch_size``; the search's points in ``search``).
* **Server**: Poisson arrivals at a target QPS, served with dynamic batching (a maximum batch and a
  wait window; rows leave the batch at their exit blocks, the model's own row removal); the figure
  is the highest QPS whose 99th-percentile latency stays under ``bound_ms``, found by bisection
  (each probe in ``search``, judged by the generator).

Every result carries ``validity`` (``"VALID"`` or ``"INVALID"``) and its ``reasons``: the
generator's (LoadGen's minimum duration, minimum query count, early stopping, latency constraint)
and beexbench's own (a loaded machine, a batch-1 interval too wide). ``generator`` says who issued
the traffic and judged it: ``"loadgen X.Y"`` or ``"python fallback (not LoadGen)"``. Durations are
the run's (``latency.scenario_*``), far below MLPerf's official minimums (600 s and tens of
thousands of queries): ``official`` is always false, and no result here is an MLPerf result.

The section is filled by code of the tree (:mod:`beexbench.runner.scenarios`, from the isolated
measurement of the headline thread setting), so its declaration has no ``measure``; a record
written before it has no ``metrics.scenarios`` and reads as before (its columns are empty).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .codec import Section
from .columns import Column, MetricDeclaration

SCENARIOS = ("single-stream", "offline", "server")
VALIDITIES = ("VALID", "INVALID")
FALLBACK = "python fallback (not LoadGen)"
NOT_OFFICIAL = ("durations and query counts below MLPerf's official minimums (600 s; thousands of queries): "
                "not an MLPerf result")


@dataclass(frozen=True, kw_only=True)
class Probe(Section):
    """One timed run of a search: an Offline batch size, or a Server target QPS."""

    batch_size: int | None  # Offline search: the batch size tried
    target_qps: float | None  # Server: the QPS asked of the generator
    achieved: float  # samples per second completed
    p90_ms: float | None
    p99_ms: float | None
    n_queries: int
    duration_s: float
    validity: Literal[("VALID", "INVALID", "search")]  # "search": an Offline search point, timed, not judged
    reasons: tuple[str, ...] = ()
    meets_bound: bool | None = None  # Server: p99 <= the bound (what the bisection follows)


@dataclass(frozen=True, kw_only=True)
class ScenarioResult(Section):
    """One scenario's figure, its verdict and how it was found."""

    scenario: Literal[SCENARIOS]
    value: float | None  # single-stream: p90 ms; offline: samples/s; server: QPS at the bound (None: none found)
    unit: Literal["ms", "samples/s", "queries/s"]
    validity: Literal[VALIDITIES]
    reasons: tuple[str, ...]  # why INVALID (empty when VALID)
    p90_ms: float | None
    p99_ms: float | None
    n_queries: int
    duration_s: float
    batch_size: int | None = None  # offline: the best batch size; server: the maximum batch
    bound_ms: float | None = None  # server: the p99 latency bound
    bound_source: str = ""  # server: how the bound was set
    wait_ms: float | None = None  # server: the dynamic-batching wait window
    bound_qps: float | None = None  # server: the highest probed QPS whose p99 met the bound (VALID or not)
    search: tuple[Probe, ...] = ()  # offline: the batch-size search; server: the bisection probes

    def __post_init__(self) -> None:
        if self.validity not in VALIDITIES:
            raise ValueError(f"validity is one of {', '.join(VALIDITIES)}")
        if self.validity == "INVALID" and not self.reasons:
            raise ValueError("an INVALID result names its reasons")


@dataclass(frozen=True, kw_only=True)
class Scenarios(Section):
    """The scenarios of one cell, at one thread setting, with the generator that judged them."""

    generator: str  # "loadgen X.Y" | FALLBACK
    official: bool  # always False: durations below MLPerf's minimums
    note: str
    threads: int | None
    min_seconds: float
    min_queries: int
    results: tuple[ScenarioResult, ...]

    def get(self, scenario: str) -> ScenarioResult | None:
        return next((r for r in self.results if r.scenario == scenario), None)


def _value(scenario: str, valid_only: bool = False):
    def read(s: Scenarios):
        r = s.get(scenario)
        if r is None or (valid_only and r.validity != "VALID"):
            return None
        return r.value
    return read


def _validity(s: Scenarios) -> str:
    return "; ".join(f"{r.scenario} {r.validity}" for r in s.results)


DECLARATION = MetricDeclaration(
    key="scenarios", section=Scenarios, measure=None,
    columns=(
        Column("ss_p90_ms", _value("single-stream"), unit="ms", better="lower", fmt=".3g"),
        Column("offline_sps", _value("offline"), unit="samples/s", better="higher", fmt=".4g"),
        Column("server_qps", _value("server"), unit="queries/s", better="higher", fmt=".4g"),
        Column("scenario_validity", _validity, seeds="first_text", empty="", numeric=False),
        Column("scenario_generator", lambda s: s.generator, seeds="first_text", empty="", numeric=False),
        # the whole section of every seed (the report's scenario table and Server curve read it)
        Column("scenarios", lambda s: s.to_dict(), seeds="per_seed", empty=[], numeric=False),
    ),
)

__all__ = ["DECLARATION", "FALLBACK", "NOT_OFFICIAL", "Probe", "SCENARIOS", "ScenarioResult", "Scenarios", "VALIDITIES"]
