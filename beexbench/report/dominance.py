"""Pareto fronts that only count a dominance the data can tell (issue 29).

Geometrically, model j dominates model i when it is at least as good on quality and cost and
strictly better on one (:func:`beexbench.report.pareto.pareto_mask`). Here j dominates i only
when, in addition, **each axis on which j is better is a distinguishable difference** (alpha
0.05, per pair): quality by the pair's test (:func:`beexbench.report.significance.quality_test`:
exact McNemar on one seed's per-sample outputs, a paired t over seeds, or an unpaired z), latency
by a paired bootstrap over the same inputs (one seed), a paired t of log latency (seeds) or the two
intervals of the median (unpaired); sizes and operation counts are exact (a smaller count is
always a real difference); any other cost (energy) by a paired t over two or more seeds, else it
cannot be told and the point is kept. A point dominated only within noise stays on the front (ringed), and the
figure's caption names it and its dominating neighbour with the test that failed.

These per-pair tests are not part of the report's Holm family: a front compares every pair of
models, and the captions say that the level is per pair.
"""
from __future__ import annotations

import math

import pandas as pd

from ..stats import ALPHA, seed_difference
from .pareto import pareto_mask
from .significance import Test, by_seed, latency_sides, quality_test, speedup_test

EXACT_COSTS = ("size_bits", "ops", "size_bits_no_emb", "disk_bytes", "deployable_bytes", "macs", "bops", "flops")

RULE = ("Ringed and joined by the dashed front: models no other model distinguishably dominates (another model dominates "
        "one only where it is better on each axis on which they differ and each such difference is significant at "
        f"α = {ALPHA:g} per pair, not corrected over the pairs; quality by an exact McNemar on one seed's per-sample outputs, "
        "a paired t over seeds, or an unpaired z-test; latency by a paired bootstrap over the same inputs, a paired t "
        "over seeds, or the two intervals of the median; size and operation counts exact; any other cost, such as energy, "
        "by a paired t over two or more seeds, else it is not tested and the point is kept).")


def _cost_test(cells: pd.DataFrame, worse: str, better: str, cost: str, name: str) -> Test:
    """``better`` against ``worse`` on ``cost`` (lower is better)."""
    what = f"{name}, {better} vs {worse}"
    if cost == "latency_ms":
        return speedup_test(latency_sides(cells, worse), latency_sides(cells, better), what + " (× faster)")
    a, b = by_seed(cells, worse), by_seed(cells, better)
    common = [s for s in sorted(set(a) & set(b)) if pd.notna(a[s].get(cost)) and pd.notna(b[s].get(cost))]
    if len(common) < 2:
        return Test(what, "x", math.nan, math.nan, math.nan, math.nan, "not tested: no interval, fewer than two seeds")
    d = seed_difference([float(b[s][cost]) for s in common], [float(a[s][cost]) for s in common])  # worse - better
    return Test(what, "x", math.nan, math.nan, math.nan, d.p_value if d.mean > 0 else 1.0,
                f"paired t over {d.n} seeds")


def _short(t: Test) -> str:
    return f"{t.what}: {t.shown()}, " + (f"p = {t.p_value:.3g}" if t.tested else t.method)


def significant_front(g: pd.DataFrame, cells: pd.DataFrame | None, cost: str, name: str = "cost",
                      alpha: float = ALPHA) -> tuple[pd.Series, list[str]]:
    """(on the front, per row of ``g``; one line per geometrically dominated point kept because no
    dominance of it is distinguishable). Without ``cells`` (rows only): the geometric front."""
    front = pareto_mask(g, cost)
    if cells is None or g.empty:
        return front, []
    c = pd.to_numeric(g[cost], errors="coerce")
    q = pd.to_numeric(g["accuracy"], errors="coerce")
    metric = str(g["metric"].dropna().iloc[0]) if "metric" in g and g["metric"].notna().any() else "accuracy"
    kept = []
    for i in g.index[~front.to_numpy()]:
        if pd.isna(c[i]) or pd.isna(q[i]):
            continue
        mine, reasons, dominated = str(g.at[i, "label"]), [], False
        for j in g.index:
            if j == i or pd.isna(c[j]) or pd.isna(q[j]) or not (c[j] <= c[i] and q[j] >= q[i] and (c[j] < c[i] or q[j] > q[i])):
                continue
            other, failed = str(g.at[j, "label"]), []
            if q[j] > q[i]:
                t = quality_test(cells, mine, other, f"{metric}, {other} − {mine}", metric)
                if not (t.tested and t.p_value < alpha and t.change > 0):
                    failed.append(t)
            if c[j] < c[i] and cost not in EXACT_COSTS and not failed:  # one failed axis is reason enough
                t = _cost_test(cells, mine, other, cost, name)
                if not (t.tested and t.p_value < alpha and (math.isnan(t.change) or t.change > 1)):
                    failed.append(t)
            if not failed:
                dominated = True
                break
            reasons.append(f"by {other} ({'; '.join(_short(t) for t in failed)})")
        if not dominated:
            front[i] = True
            kept.append(f"{mine}: dominated only within noise " + ", ".join(reasons))
    return front, kept


def front_caption(kept: list[str]) -> str:
    """The caption sentences of one Pareto figure."""
    out = RULE
    if kept:
        out += " Geometrically dominated but kept on the front, as no dominance of it is distinguishable: " + "; ".join(kept) + "."
    return out
