"""Per-cell rows -> one row per (task, target, model, setting), seeds aggregated.

Several seeds: mean and sample std (error bars are mean ± std). One seed: the record's own
95% intervals (Wilson for accuracy, bootstrap of the median for latency). The same seed saved
by several runs counts once: the most recently finished record wins.
"""
from __future__ import annotations

import math

import pandas as pd

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


def aggregate(cells: pd.DataFrame) -> pd.DataFrame:
    """One row per (task, target_label, label) with means, spreads and interval bounds."""
    rows = []
    for (task, target_label, label), g in cells.groupby(GROUP, sort=True):
        g = g.sort_values("seed")
        n = len(g)
        first = g.iloc[0]
        row = {
            "task": task, "target_label": target_label, "label": label,
            "model": first.model, "setting": first.setting, "metric": first.metric, "target": first.target, "hardware": first.hardware,
            "emulated": bool(g.emulated.any()), "description": first.description, "role": first.role,
            "accuracy_undefined": next((u for u in g.accuracy_undefined if u), ""),
            "n_seeds": n, "seeds": ",".join(str(int(s)) for s in g.seed),
            "run_ids": ",".join(sorted(set(g.run_id))),
        }
        for c in ["accuracy", "accuracy_no_exit", "size_bits", "size_bits_no_emb", "disk_bytes", "params", "macs",
                  "bops", "flops", "ops", "macs_reduction", "latency_ms", "latency_p90_ms", "energy_j",
                  "peak_rss_mib", "mean_exit", "n_blocks"]:
            row[c] = _mean(g[c])
        row["accuracy_std"] = _std(g.accuracy)
        row["latency_std"] = _std(g.latency_ms)
        row["energy_std"] = _std(g.energy_j)
        if n > 1:
            row["spread"] = "std"
            for c, s in [("accuracy", "accuracy_std"), ("latency", "latency_std")]:
                mid = row["accuracy" if c == "accuracy" else "latency_ms"]
                row[f"{c}_lo"], row[f"{c}_hi"] = mid - row[s], mid + row[s]
        else:
            row["spread"] = "ci95"
            for c in ["accuracy_lo", "accuracy_hi", "latency_lo", "latency_hi"]:
                row[c] = float(first[c]) if pd.notna(first[c]) else math.nan
        row["latency_ci_pct"] = _mean(g.latency_ci_pct)
        row["latency_threads"] = ",".join(sorted({str(int(t)) for t in g.latency_threads if pd.notna(t)}, key=int))
        per: dict[int, list[float]] = {}
        for d in g.latency_by_threads:
            for t, v in (d or {}).items():
                per.setdefault(int(t), []).append(v)
        row["latency_by_threads"] = {t: sum(v) / len(v) for t, v in sorted(per.items())}
        row["energy_n"] = int(g.energy_j.notna().sum())
        measured = g[g.energy_j.notna()] if g.energy_j.notna().any() else g  # provenance of the figure shown
        row["energy_provenance"] = " / ".join(sorted(set(measured.energy_provenance)))
        row["exit_histogram"] = _sum_histograms(list(g.exit_histogram))
        row["calibration_param"] = first.calibration_param
        row["calibration_chosen"] = [c for c in g.calibration_chosen]
        row["val_sweep"] = [(int(s), sw) for s, sw in zip(g.seed, g.val_sweep) if sw]
        row["test_sweep"] = [(int(s), sw) for s, sw in zip(g.seed, g.test_sweep) if sw]
        row["uncounted"] = {k: v for u in g.uncounted if isinstance(u, dict) for k, v in u.items()}
        rows.append(row)
    return pd.DataFrame(rows)
