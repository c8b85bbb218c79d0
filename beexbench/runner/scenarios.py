"""The producer of ``metrics.scenarios`` (issue 31): a model's deployment scenarios, measured in the
isolated worker right after its batch-1 loop (:func:`beexbench.runner.measure.measure_speed`), at
the target's fewest-threads setting only (1 thread on a CPU), as the static-depth latencies are,
with the process's affinity widened to every core for the block (:func:`generator_cores`): LoadGen
issues and times queries from threads of its own, which must not share the model's cores (on a
2-core host, an ORT session on both cores beside LoadGen measured a SingleStream p90 of 4.1 ms for
a 0.22 ms model; on one pinned core a 0.05 ms model's Server p99 was 54 ms). The workload serves test samples: a batch is the rows of the test split
cut to its longest row, run through the model's own ``predict`` (its exit rule applied, each row
removed at its exit block: the row removal of ``models.early_exit``)."""
from __future__ import annotations

import dataclasses
import os
from contextlib import contextmanager
from typing import Iterator, Sequence

import torch

from ..config import LatencySettings
from ..profilers._traffic import Workload
from ..profilers.scenarios import ScenarioPlan, run_scenarios
from ..results.costs import WIDE_CI_PCT, Latency
from ..results.scenarios import Scenarios


def plan_of(settings: LatencySettings) -> ScenarioPlan:
    """The run's ``latency.scenario_*`` / ``latency.server_*`` settings as a plan."""
    return ScenarioPlan(
        scenarios=tuple(settings.scenarios), min_seconds=settings.scenario_min_seconds,
        max_seconds=settings.scenario_max_seconds, min_queries=settings.scenario_min_queries,
        server_min_queries=settings.server_min_queries, offline_batch_sizes=tuple(settings.offline_batch_sizes),
        server_bound_ms=settings.server_bound_ms, server_bound_p90_multiple=settings.server_bound_p90_multiple,
        server_max_batch=settings.server_max_batch, server_wait_ms=settings.server_wait_ms,
        server_probes=settings.server_probes)


def model_workload(adapter, test, device, n: int) -> Workload:
    """The first ``n`` test samples, served in batches by ``adapter.predict`` (inference mode in
    whichever thread the generator serves from)."""
    ids, mask = test.input_ids[:n], test.attention_mask[:n]

    def run(indices: Sequence[int]) -> None:
        idx = torch.as_tensor(list(indices), dtype=torch.long)
        m = mask[idx]
        width = max(int(m.sum(1).max()), 1)
        with torch.inference_mode():
            adapter.predict(ids[idx][:, :width].to(device), m[:, :width].to(device))

    return Workload(n, run)


def ci_reasons(batch1: Latency) -> list[str]:
    """SingleStream's reason of beexbench's own: the batch-1 loop's interval too wide."""
    if batch1.ci_halfwidth_pct > WIDE_CI_PCT:
        return [f"CI too wide: the batch-1 median's 95% interval is ±{batch1.ci_halfwidth_pct:.1f}% "
                f"(over {WIDE_CI_PCT:g}%)"]
    return []


def measure_scenarios(adapter, test, target, settings: LatencySettings, batch1: Latency) -> Scenarios | None:
    """The scenarios the run asks for (None: none asked)."""
    if not settings.scenarios:
        return None
    w = model_workload(adapter, test, target.device, min(settings.samples, len(test)))
    with target.activate(), generator_cores() as where:
        out = run_scenarios(w, plan_of(settings), batch1_p90_ms=batch1.p90, single_stream_reasons=ci_reasons(batch1),
                            threads=target.threads)
    return dataclasses.replace(out, note=f"{out.note}; the model on {target.threads} intra-op thread(s), {where}")


@contextmanager
def generator_cores() -> Iterator[str]:
    """Every core of the machine for the block (the model keeps its intra-op thread count): the
    measuring process is pinned to the setting's cores, and LoadGen's issuing and timing threads,
    started inside the block, would otherwise share the model's core (a 0.05 ms model's Server p99
    was 54 ms on one pinned core). Yields where the generator ran, as the record says it."""
    from ..targets import _host

    cores = set(range(os.cpu_count() or 1))
    restore, note = _host.pin_process(cores)
    try:
        yield note or f"the traffic generator's threads free to run on all {len(cores)} cores"
    finally:
        if restore is not None:
            restore()
