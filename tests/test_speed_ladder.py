"""The report's speed ladder (beexbench/report/speed_ladder.py) on hand-built section rows."""
from __future__ import annotations

import math

import pandas as pd
import pytest

from beexbench.report.speed_ladder import DEPTHS_DIFFER, ladder, ladder_html, ratio_interval


def row(model, ms, lo, hi, acc, points=None, modal=None, hist=None, n_blocks=6, mean_exit=None, threads="1"):
    sd = None if points is None else {"points": [{"k": k, "accuracy": a, "accuracy_lo": a - .02, "accuracy_hi": a + .02,
                                                  "mean_macs": 1.0, "latency_ms": l, "latency_note": ""} for k, a, l in points],
                                      "modal_block": modal, "verdict": "degenerate"}
    return {"model": model, "label": model, "latency_ms": ms, "latency_lo": lo, "latency_hi": hi, "accuracy": acc,
            "latency_threads": threads, "static_depth": sd, "exit_histogram": hist or [], "n_blocks": n_blocks,
            "mean_exit": mean_exit}


def frame(packed_points=True):
    return pd.DataFrame([
        row("fp32", 1.0, 0.9, 1.1, 0.77, points=[(2, 0.76, 0.40), (6, 0.77, 1.2)], modal=2),
        row("fp32-ort", 0.50, 0.45, 0.55, 0.77, mean_exit=2.0),
        row("fp32-ort-graph", 0.20, 0.18, 0.22, 0.77, points=[(2, 0.76, 0.20), (6, 0.77, 0.50)], modal=2),
        row("int8-ort-graph", 0.15, 0.15, 0.15, 0.75, points=[(2, 0.74, 0.10)], modal=2),
        row("beexformer-packed", 0.05, 0.05, 0.05, 0.77, modal=2, hist=[0, 90, 10, 0, 0, 0], mean_exit=2.1,
            points=[(2, 0.76, 0.05), (6, 0.78, 0.15)] if packed_points else None),
    ])


def test_ratio_interval_is_hand_computed():
    r, lo, hi = ratio_interval(2.0, 1.0, 4.0, 1.0, 1.0, 1.0)  # a's half-width log(4)/2 = log 2; b exact
    assert r == 2.0 and lo == pytest.approx(1.0) and hi == pytest.approx(4.0)
    r, lo, hi = ratio_interval(1.0, 0.5, 2.0, 1.0, 0.5, 2.0)  # both log 2: sqrt(2) log 2
    assert hi == pytest.approx(math.exp(math.sqrt(2) * math.log(2)))


def test_ladder_at_equal_depth_and_the_glue_share():
    steps, k, overhead = ladder(frame())
    assert k == 2
    ratios = {s.after.model: s for s in steps[:3]}
    assert ratios["fp32-ort-graph"].ratio == pytest.approx(0.40 / 0.20)
    assert ratios["int8-ort-graph"].ratio == pytest.approx(0.20 / 0.10)
    assert ratios["beexformer-packed"].ratio == pytest.approx(0.10 / 0.05)
    assert all(s.label == "" for s in steps[:3]) and all(s.before.depth == "k=2" for s in steps[:3])
    assert ratios["fp32-ort-graph"].before.accuracy == 0.76  # the static point's accuracy, beside the ratio
    # a static point carries its model's relative interval: fp32 ±10%, graph ±10%
    s = ratios["fp32-ort-graph"]
    assert s.before.lo == pytest.approx(0.36) and s.lo < s.ratio < s.hi
    ee = steps[3]
    assert ee.before.depth == "k=6" and not ee.after.static and ee.ratio == pytest.approx(0.15 / 0.05)
    assert overhead == pytest.approx(1 - 0.20 / 0.50)
    assert "data:image/png" in ladder_html(frame(), "t", figures=True)


def test_a_model_without_its_static_depth_is_labelled_depths_differ():
    g = frame()
    g.loc[g.model == "int8-ort-graph", "static_depth"] = None
    steps, _, _ = ladder(g)
    by = {(s.before.model, s.after.model): s for s in steps}
    into, out = by[("fp32-ort-graph", "int8-ort-graph")], by[("int8-ort-graph", "beexformer-packed")]
    assert into.label == DEPTHS_DIFFER == out.label and into.after.depth == "deployed rule"
    assert into.ratio == pytest.approx(0.20 / 0.15)
    html = ladder_html(g, "t", figures=False)
    assert "depths differ" in html and "data-speed-ladder" in html and "per-block overhead" in html


def test_modal_block_falls_back_to_the_exit_histogram_and_threads_must_match():
    g = frame()
    g.loc[g.model == "beexformer-packed", "static_depth"] = None
    # static-depth latencies are all at 1 thread (runner.isolate); a side without one falls back to its
    # headline latency, whose thread setting may differ: then the step says so
    g.loc[g.model == "fp32", "static_depth"] = None
    g.loc[g.model == "fp32", "latency_threads"] = "2"
    steps, k, _ = ladder(g)
    assert k == 2  # the histogram's mode
    first = steps[0]
    assert "threads differ" in first.label and "depths differ" in first.label
    assert len(steps) == 3  # no static depth-L latency for packed: no early-exit step


def test_no_ladder_models_no_section():
    g = pd.DataFrame([row("bow-linear", 0.01, 0.01, 0.01, 0.78)])
    assert ladder_html(g, "t") == ""


def test_the_deployed_rule_side_is_read_at_the_common_thread_setting():
    g = frame()
    g["latency_by_threads"] = [{1: 0.5, 2: 0.3}] * len(g)
    steps, _, _ = ladder(g)
    last = steps[-1]  # packed static depth L -> deployed rule: the deployed side at 1 thread (0.5 ms), not 2
    assert last.after.latency == 0.5 and last.after.threads == "1" and "threads differ" not in last.label
