"""Deployment scenarios (issue 31): a toy workload of known service time through SingleStream,
Offline and Server with MLPerf LoadGen, checked against the analytic values; a run too short is
INVALID with the reason; the fallback generator is labelled; settings are checked before any work;
the section round-trips through the codec and the report greys INVALID rows."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time

import pandas as pd
import pytest

from beexbench.config import RunConfig, apply_flags
from beexbench.profilers._loadgen import available, parse_summary
from beexbench.profilers._traffic import PythonGenerator, Workload, percentile
from beexbench.profilers.scenarios import ScenarioPlan, make_generator, run_scenarios
from beexbench.results.codec import RecordError
from beexbench.results.columns import sections
from beexbench.results.scenarios import FALLBACK, ScenarioResult, Scenarios
from beexbench.validate import latency_problems

needs_loadgen = pytest.mark.skipif(not available(), reason="mlcommons-loadgen is not installed (extra [loadgen])")
D = 0.002  # seconds per row of the toy model


def sleeper(per_row: float = D) -> Workload:
    return Workload(64, lambda idx: time.sleep(per_row * len(idx)))


def md1_qps_at_p99(bound: float, service: float, p: float = 0.99) -> float:
    """The arrival rate at which an M/D/1 queue's p99 sojourn time equals ``bound`` (Erlang's
    waiting-time distribution: P(W <= x) = (1-rho) sum_k (lam (kD - x))^k / k! e^{-lam (kD - x)})."""
    def cdf(x: float, lam: float) -> float:
        return (1 - lam * service) * sum((lam * (k * service - x)) ** k / math.factorial(k) * math.exp(-lam * (k * service - x))
                                         for k in range(int(x // service) + 1))
    lo, hi = 1e-6, (1 - 1e-9) / service
    for _ in range(80):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if cdf(bound - service, mid) >= p else (lo, mid)
    return lo


def test_the_md1_reference_is_right():
    # rho -> 0: p99 sojourn is the service time itself; a tight bound allows almost no load
    assert md1_qps_at_p99(1.02 * D, D) * D < 0.03
    # hand check at 10 D: rho = 0.7735 (Erlang's formula, iterated by hand to 4 digits)
    assert md1_qps_at_p99(10 * D, D) * D == pytest.approx(0.7735, abs=2e-3)


@needs_loadgen
def test_a_toy_of_known_service_time_through_all_three_scenarios_with_loadgen():
    plan = ScenarioPlan(scenarios=("single-stream", "offline", "server"), min_seconds=0.3, max_seconds=10.0,
                        min_queries=64, server_min_queries=500, offline_batch_sizes=(1, 8), server_bound_ms=10 * D * 1e3,
                        server_max_batch=1, server_wait_ms=0.0, server_probes=5)
    s = run_scenarios(sleeper(), plan, load=lambda: 0.0)
    assert s.generator.startswith("loadgen ") and not s.official and "not an MLPerf result" in s.note
    ss, off, srv = (s.get(k) for k in ("single-stream", "offline", "server"))
    # p90 of a 2 ms sleep: 2.1-2.2 ms on a quiet host; the margin absorbs a busy CI runner's wake-up delays
    assert ss.validity == "VALID" and D * 1e3 <= ss.value < D * 1e3 * 2.5
    # Offline: one row costs D whatever the batch, so samples/s is 1/D (sleep overshoot only lowers it)
    assert 0.7 / D <= off.value <= 1.02 / D and off.batch_size in (1, 8) and [p.batch_size for p in off.search] == [1, 8]
    # Server, one row at a time: an M/D/1 queue; the highest QPS whose p99 met the bound (LoadGen's check),
    # against the analytic value at the service time the batch-1 search point measured (sleep + call overhead)
    service = 1 / off.search[0].achieved
    assert D <= service < 1.5 * D
    analytic = md1_qps_at_p99(10 * D, service)
    # 20%, not 10%: a probe of ~1 s starts from an empty queue, so it sees fewer of the long busy periods that set
    # the steady-state p99, and finds a QPS above the analytic one (+7 to +16% on a loaded 2-core host)
    # (a stall on a loaded runner can only lower the QPS found: the lower side has the wider margin)
    # the figure reported (the highest probe LoadGen judged VALID: its early stopping discounts the lucky short
    # probes that met the bound by a few queries); a stall on a loaded runner can only lower it
    assert srv.validity == "VALID" and 0.75 * analytic <= srv.value <= 1.3 * analytic
    assert len(srv.search) >= 2 and all(p.validity in ("VALID", "INVALID") for p in srv.search)
    assert any(p.meets_bound for p in srv.search) and srv.bound_ms == pytest.approx(10 * D * 1e3)


@needs_loadgen
def test_a_run_too_short_for_loadgens_minimum_is_invalid_with_the_reason():
    plan = ScenarioPlan(scenarios=("single-stream",), min_seconds=0.1, max_seconds=0.3, min_queries=100_000)
    r = run_scenarios(sleeper(), plan, load=lambda: 0.0).get("single-stream")
    assert r.validity == "INVALID"
    assert "LoadGen: min queries not satisfied" in r.reasons


def test_the_fallback_generator_is_labelled_and_judges_its_own_minimums():
    assert make_generator(prefer_loadgen=False).label == FALLBACK == "python fallback (not LoadGen)"
    plan = ScenarioPlan(scenarios=("single-stream", "offline"), min_seconds=0.05, max_seconds=0.2, min_queries=10_000,
                        offline_batch_sizes=(4,))
    s = run_scenarios(sleeper(0.001), plan, generator=PythonGenerator(), load=lambda: 0.0)
    assert s.generator == FALLBACK
    for r in s.results:
        assert r.validity == "INVALID" and any(x.startswith("min queries not satisfied") for x in r.reasons)


def test_beexbench_own_reasons_make_a_result_invalid():
    plan = ScenarioPlan(scenarios=("single-stream",), min_seconds=0.02, max_seconds=1.0, min_queries=5)
    r = run_scenarios(sleeper(0.001), plan, generator=PythonGenerator(), load=lambda: 99.0).get("single-stream")
    assert r.validity == "INVALID" and any(x.startswith("loaded machine: 1-minute load average 99.00") for x in r.reasons)


def test_percentiles_follow_loadgens_nearest_rank():
    values = list(range(1, 11))  # 10 values: floor(0.9 * 10) = 9 -> the 10th smallest
    assert percentile(values, 0.9) == 10 and percentile(values, 0.5) == 6 and percentile([], 0.9) is None


def test_a_loadgen_summary_is_read_with_its_reasons():
    text = ("Scenario : Server\nCompleted samples per second    : 223.24\nResult is : INVALID\n"
            "  Performance constraints satisfied : NO\n  Min duration satisfied : Yes\n  Min queries satisfied : Yes\n"
            "  Early stopping satisfied: NO\nEarly Stopping Result:\n * Run unsuccessful.\n * Processed 227 queries.\n\n"
            "99.00 percentile latency (ns)   : 53200623\n90.00 percentile latency (ns)   : 32671445\n")
    got = parse_summary(text)
    assert not got["valid"] and got["sps"] == 223.24 and got["p99_ms"] == pytest.approx(53.200623)
    assert got["checks"] == {"Performance constraints": False, "Min duration": True, "Min queries": True, "Early stopping": False}
    assert "LoadGen: performance constraints not satisfied" in got["reasons"]
    assert any("Processed 227 queries" in r for r in got["reasons"])


def test_scenario_settings_are_checked_before_any_work():
    cfg = apply_flags(RunConfig(), latency_scenarios="single-stream,warp")
    assert cfg.latency.scenarios == ["single-stream", "warp"]
    problems = latency_problems(cfg.latency)
    assert problems == ["unknown scenario 'warp' in 'latency.scenarios' (--scenarios): known are single-stream, offline, server"]
    bad = apply_flags(RunConfig(), latency={"server_max_batch": 0, "server_bound_ms": -1.0, "offline_batch_sizes": []})
    lines = latency_problems(bad.latency)
    assert any("server_max_batch" in p for p in lines) and any("server_bound_ms" in p for p in lines)
    assert any("offline_batch_sizes' is empty" in p for p in lines)


def test_an_unknown_scenario_is_one_line_and_exit_2_from_the_cli(tmp_path):
    env = {**os.environ, "BEEXBENCH_CACHE": str(tmp_path / "cache")}
    proc = subprocess.run([sys.executable, "-m", "beexbench.cli", "run", "--scenarios", "single-stream,warp", "--models", "fp32",
                           "--tasks", "rotten_tomatoes", "--results", str(tmp_path / "r")],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "unknown scenario 'warp'" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "r").exists() or not any((tmp_path / "r").iterdir())


def test_scenario_settings_at_their_defaults_keep_old_fingerprints():
    assert not {"scenarios", "server_max_batch"} & set(RunConfig().to_dict()["latency"])
    cfg = apply_flags(RunConfig(), latency_scenarios="offline")
    assert cfg.to_dict()["latency"]["scenarios"] == ["offline"]


def _section() -> Scenarios:
    plan = ScenarioPlan(scenarios=("single-stream", "offline"), min_seconds=0.02, max_seconds=1.0, min_queries=5,
                        offline_batch_sizes=(2,))
    return run_scenarios(sleeper(0.0005), plan, generator=PythonGenerator(), load=lambda: 0.0)


def test_the_section_round_trips_through_the_codec_and_is_declared():
    s = _section()
    again = Scenarios.from_dict(json.loads(json.dumps(s.to_dict())))
    assert again == s and again.get("offline").search[0].validity == "search"
    assert sections()["scenarios"] is Scenarios
    doc = s.to_dict()
    doc["results"][0] = {**doc["results"][0], "validity": "INVALID", "reasons": []}
    with pytest.raises(RecordError, match="names its reasons"):
        Scenarios.from_dict(doc)
    with pytest.raises(ValueError):
        ScenarioResult(scenario="offline", value=1.0, unit="samples/s", validity="MAYBE", reasons=(), p90_ms=None,
                       p99_ms=None, n_queries=1, duration_s=1.0)


def test_the_report_greys_invalid_results_with_their_reasons():
    from beexbench.report.scenarios import scenarios_block

    good = _section().to_dict()
    bad = json.loads(json.dumps(good))
    bad["results"][1].update(validity="INVALID", reasons=["LoadGen: min queries not satisfied"])
    g = pd.DataFrame([{"label": "fp32", "role": "baseline", "scenarios": [(0, good)]},
                      {"label": "beexformer", "role": "subject", "scenarios": [(0, bad)]}])
    html = scenarios_block(g, "t on cpu", figures=False)
    assert html.count('data-validity="INVALID"') == 1 and html.count('data-validity="VALID"') == 2
    row = html.split('data-validity="INVALID"', 1)[1].split("</tr>", 1)[0]
    assert "color:#888" in row and "offline: LoadGen: min queries not satisfied" in row and "beexformer" in row
    assert "python fallback (not LoadGen)" in html
