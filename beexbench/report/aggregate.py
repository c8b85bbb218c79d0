"""Per-cell rows -> one row per (task, target, model, setting), seeds aggregated.

How each column is combined is its declaration's (``beexbench.results.columns``): several seeds:
mean and sample std (error bars are mean ± std); one seed: the record's own 95% intervals
(Wilson for accuracy, bootstrap of the median for latency). The same seed saved
by several runs counts once: the most recently finished record wins.
"""
from __future__ import annotations

import math

import pandas as pd

from ..results.columns import columns

GROUP = ["task", "target_label", "label"]
CELL = GROUP + ["seed"]


def dedupe(cells: pd.DataFrame) -> tuple[pd.DataFrame, int, int]:
    """Keep the latest record per (task, target, model, setting, seed), and of a model's seeds
    only those trained with the configuration of its latest record (seeds of a differently
    configured run that shares the suite's name are never averaged in). Returns the cells, how
    many repeated a cell, and how many were left out for another configuration."""
    if cells.empty:
        return cells, 0, 0
    d = cells.sort_values("finished_at", kind="stable").drop_duplicates(CELL, keep="last")
    latest = d.groupby(GROUP, sort=False)["config_id"].transform("last")
    same = d[d["config_id"] == latest]
    return same, len(cells) - len(d), len(d) - len(same)


def _mean(s: pd.Series) -> float:
    s = s.dropna()
    return float(s.mean()) if len(s) else math.nan


def _std(s: pd.Series) -> float:
    s = s.dropna()
    return float(s.std(ddof=1)) if len(s) > 1 else math.nan


def _sum_histograms(hists) -> list[int]:
    hists = [h for h in hists if h]
    if not hists or len({len(h) for h in hists}) != 1:
        return list(hists[0]) if hists else []
    return [int(sum(col)) for col in zip(*hists)]


def _pooled_by_key(dicts) -> dict:
    per: dict[int, list[float]] = {}
    for d in dicts:
        for t, v in (d or {}).items():
            per.setdefault(int(t), []).append(v)
    return {t: sum(v) / len(v) for t, v in sorted(per.items())}


# how a column's seeds become one value, by the name its declaration gives (results.columns)
AGGREGATIONS = {
    "mean": lambda s, g: _mean(s),
    "first": lambda s, g: s.iloc[0],
    "first_text": lambda s, g: next((u for u in s if u), ""),
    "join": lambda s, g: ",".join(sorted({str(int(t)) for t in s if pd.notna(t)}, key=int)),
    "pooled_by_key": lambda s, g: _pooled_by_key(s),
    "sum_lists": lambda s, g: _sum_histograms(list(s)),
    "list": lambda s, g: list(s),
    "per_seed": lambda s, g: [(int(seed), v) for seed, v in zip(g.seed, s) if v],
    "merge": lambda s, g: {k: v for u in s if isinstance(u, dict) for k, v in u.items()},
}


def aggregate(cells: pd.DataFrame) -> pd.DataFrame:
    """One row per (task, target_label, label): each declared column combined over seeds as its
    declaration says (``seeds``), with its spread (sample std) and interval bounds where declared."""
    declared = [c for c in columns() if c.name in cells]
    rows = []
    for (task, target_label, label), g in cells.groupby(GROUP, sort=True):
        g = g.sort_values("seed")
        n = len(g)
        first = g.iloc[0]
        row = {
            "task": task, "target_label": target_label, "label": label,
            "model": first.model, "setting": first.setting, "target": first.target, "hardware": first.hardware,
            "emulated": bool(g.emulated.any()), "description": first.description, "role": first.role,
            "n_seeds": n, "seeds": ",".join(str(int(s)) for s in g.seed),
            "run_ids": ",".join(sorted(set(g.run_id))),
            "spread": "std" if n > 1 else "ci95",
        }
        for c in declared:
            if c.seeds != "none":
                how = c.seeds if callable(c.seeds) else AGGREGATIONS[c.seeds]
                row[c.name] = how(g[c.name], g)
            if c.spread:
                row[c.spread] = _std(g[c.name])
            if c.count:
                row[c.count] = int(g[c.name].notna().sum())
        for c in declared:  # one seed: the record's own interval; several: mean ± std
            if c.interval:
                lo, hi = c.interval
                if n > 1:
                    row[lo], row[hi] = row[c.name] - row[c.spread], row[c.name] + row[c.spread]
                else:
                    row[lo], row[hi] = (float(first[x]) if pd.notna(first[x]) else math.nan for x in (lo, hi))
        rows.append(row)
    return pd.DataFrame(rows)
