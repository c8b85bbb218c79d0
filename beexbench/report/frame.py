"""Saved cell records -> one tidy pandas DataFrame (one row per cell)."""
from __future__ import annotations

import pandas as pd

from ..results.schema import CellRecord


def _get(d: dict, *path, default=None):
    for p in path:
        if not isinstance(d, dict) or p not in d:
            return default
        d = d[p]
    return d


def records_frame(records: list[CellRecord]) -> pd.DataFrame:
    rows = []
    for r in records:
        m = r.metrics
        ops = _get(m, "ops", "per_sample_mean", default={}) or {}
        rows.append({
            "run_id": r.run_id,
            "model": r.key.model,
            "task": r.key.task,
            "target": r.key.target,
            "emulated": bool(_get(r.target, "emulated", default=False)),
            "seed": r.key.seed,
            "status": r.status,
            "error": r.error,
            "accuracy": _get(m, "accuracy", "value"),
            "accuracy_lo": (_get(m, "accuracy", "ci95") or [None, None])[0],
            "accuracy_hi": (_get(m, "accuracy", "ci95") or [None, None])[1],
            "accuracy_no_exit": _get(m, "accuracy_no_exit", "value"),
            "size_bits": _get(m, "size", "total_bits"),
            "size_bits_no_emb": _get(m, "size", "total_bits_without_embeddings"),
            "disk_bytes": _get(m, "size", "disk_bytes"),
            "params": _get(m, "size", "params"),
            "macs": sum(v for k, v in ops.items() if k.startswith("macs_") and k != "macs_binary") if ops else None,
            "bops": ops.get("bops"),
            "flops": ops.get("flops"),
            "ops": ops.get("ops"),
            "macs_reduction": _get(m, "ops", "macs_reduction_from_exits"),
            "latency_ms": _get(m, "batch1", "median"),
            "latency_p90_ms": _get(m, "batch1", "p90"),
            "latency_lo": (_get(m, "batch1", "ci95_median") or [None, None])[0],
            "latency_hi": (_get(m, "batch1", "ci95_median") or [None, None])[1],
            "latency_ci_pct": _get(m, "batch1", "ci_halfwidth_pct"),
            "energy_j": _get(m, "energy", "joules_per_sample"),
            "energy_provenance": _get(m, "energy", "provenance", default="not measured"),
            "peak_rss_mib": (_get(m, "memory", "peak_rss_bytes") or 0) / 2**20 or None,
            "mean_exit": _get(m, "exits", "mean_exit_block"),
            "n_blocks": _get(m, "exits", "n_blocks"),
            "warnings": len(r.warnings),
        })
    return pd.DataFrame(rows)
