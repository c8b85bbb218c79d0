"""Saved cell records -> one tidy pandas DataFrame (one row per cell)."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import pandas as pd

from ..adapters.roles import BASELINE, REFERENCE_FLOOR, recorded_role
from ..results.schema import CellRecord


@dataclass(frozen=True)
class Quality:
    """How a task's headline metric is named and shown (values are shown ×100)."""

    key: str  # as in the records: "accuracy" or "pearson_r"
    name: str  # in sentences
    axis: str  # axis label and table header (×100 values)
    delta: str  # unit of a difference of two values
    interval: str  # what a single seed's error bar is


QUALITIES = {
    "accuracy": Quality("accuracy", "accuracy", "accuracy (%)", "percentage points of accuracy", "95% Wilson interval"),
    "pearson_r": Quality("pearson_r", "Pearson r", "Pearson r ×100", "hundredths of Pearson r", "95% Fisher-z interval"),
}


def quality_of(df: pd.DataFrame) -> Quality:
    """The metric of a (task, ...) group: accuracy unless its records say otherwise."""
    metrics = set(df["metric"].dropna()) if "metric" in df else set()
    return QUALITIES.get(metrics.pop() if len(metrics) == 1 else "accuracy", QUALITIES["accuracy"])


def _get(d, *path, default=None):
    for p in path:
        if not isinstance(d, dict) or p not in d:
            return default
        d = d[p]
    return default if d is None else d


def _pair(v) -> tuple:
    return tuple(v) if isinstance(v, (list, tuple)) and len(v) == 2 else (None, None)


def hardware(record: CellRecord) -> str:
    """What the cell ran on, so that two machines' ``cpu`` targets stay apart."""
    env = record.environment or {}
    if str(_get(record.target, "device", default="")).startswith("cuda"):
        gpus = env.get("gpus") or []
        name = _get(gpus[0], "name") if gpus and isinstance(gpus[0], dict) else None
        if name:
            return str(name)
    return str(_get(env, "cpu", "model", default="unknown CPU"))


def target_label(record: CellRecord) -> str:
    hw = hardware(record)
    emulated = bool(_get(record.target, "emulated", default=False))
    return f"{record.key.target} · {'emulated on ' if emulated else ''}{hw}"


FLOOR_ROLE = str(REFERENCE_FLOOR)


def model_roles(df: pd.DataFrame) -> pd.Series:
    """Each row's :class:`~beexbench.adapters.roles.Role`: the one its records state (declared by
    the model's adapter), or for records written before roles were declared the legacy rule."""
    if df.empty or "model" not in df:
        return pd.Series([BASELINE] * len(df), index=df.index, dtype=object)
    recorded = df["role"] if "role" in df else pd.Series("model", index=df.index)
    return pd.Series([recorded_role(str(m), None if pd.isna(r) else str(r)) for m, r in zip(df["model"], recorded)],
                     index=df.index, dtype=object)


def has_role(df: pd.DataFrame, kind: str) -> pd.Series:
    """Rows whose role is of ``kind`` (``"reference floor"``, ``"ablation"``, ...)."""
    return model_roles(df).map(lambda role: role.kind == kind).astype(bool)


def is_floor(df: pd.DataFrame) -> pd.Series:
    """Rows of reference floors (majority, bow-linear): reference lines, not Pareto candidates."""
    return has_role(df, REFERENCE_FLOOR.kind)


def model_label(model: str, setting: str) -> str:
    return model if setting in ("", "default") else f"{model} ({setting})"


def config_id(model: dict) -> str:
    """A short hash of what the model was built and trained with (its recorded config), less
    what differs between the seeds of one configuration: the seed and the calibrated exit value."""
    cfg = {k: dict(v) if isinstance(v, dict) else v for k, v in ((model or {}).get("config") or {}).items()}
    cfg.get("train", {}).pop("seed", None)
    cfg.get("exit", {}).pop(str(cfg.get("calibration", {}).get("param")), None)
    return hashlib.sha256(json.dumps(cfg, sort_keys=True, default=str).encode()).hexdigest()[:12]


def records_frame(records: list[CellRecord]) -> pd.DataFrame:
    """One row per cell record with the numbers the report shows (raw units: bits, MACs, ms, J)."""
    rows = []
    for r in records:
        m = r.metrics or {}
        ops = _get(m, "ops", "per_sample_mean", default={}) or {}
        acc_lo, acc_hi = _pair(_get(m, "accuracy", "ci95"))
        lat_lo, lat_hi = _pair(_get(m, "batch1", "ci95_median"))
        exits = _get(m, "exits", default={}) or {}
        calibration = exits.get("calibration") or _get(r.model, "fit", "calibration", default={}) or {}
        rss = _get(m, "memory", "peak_rss_bytes")
        rows.append({
            "run_id": r.run_id,
            "model": r.key.model,
            "task": r.key.task,
            "target": r.key.target,
            "setting": r.key.setting,
            "seed": r.key.seed,
            "label": model_label(r.key.model, r.key.setting),
            "target_label": target_label(r),
            "hardware": hardware(r),
            "emulated": bool(_get(r.target, "emulated", default=False)),
            "status": r.status,
            "error": r.error,
            "finished_at": r.finished_at or "",
            "description": str(_get(r.model, "description", default="")),
            "role": str(_get(r.model, "role", default="model")),  # as recorded (see model_roles)
            "config_id": config_id(r.model),
            "metric": str(_get(m, "accuracy", "metric", default="accuracy")),
            "accuracy": _get(m, "accuracy", "value"),
            "accuracy_lo": acc_lo,
            "accuracy_hi": acc_hi,
            "accuracy_n": _get(m, "accuracy", "n"),
            "accuracy_undefined": str(_get(m, "accuracy", "undefined", default="")),  # why there is no value
            "accuracy_no_exit": _get(m, "accuracy_no_exit", "value"),
            "size_bits": _get(m, "size", "total_bits"),
            "size_bits_no_emb": _get(m, "size", "total_bits_without_embeddings"),
            "disk_bytes": _get(m, "size", "disk_bytes"),
            "params": _get(m, "size", "params"),
            # MACs that are not binary (fp32, w1a32, int8); binary x binary MACs are BOPs.
            "macs": sum(v or 0 for k, v in ops.items() if k.startswith("macs_") and k != "macs_binary") if ops else None,
            "bops": ops.get("bops"),
            "flops": ops.get("flops"),
            "ops": ops.get("ops"),
            "macs_reduction": _get(m, "ops", "macs_reduction_from_exits"),
            "uncounted": _get(m, "ops", "uncounted", default={}),
            "latency_ms": _get(m, "batch1", "median"),
            "latency_p90_ms": _get(m, "batch1", "p90"),
            "latency_lo": lat_lo,
            "latency_hi": lat_hi,
            "latency_ci_pct": _get(m, "batch1", "ci_halfwidth_pct"),
            "energy_j": _get(m, "energy", "joules_per_sample"),
            "energy_provenance": str(_get(m, "energy", "provenance", default="not measured")),
            "peak_rss_mib": rss / 2**20 if rss else None,
            "mean_exit": exits.get("mean_exit_block"),
            "n_blocks": exits.get("n_blocks"),
            "exit_histogram": exits.get("histogram") or [],
            "calibration_param": calibration.get("param") or "delta",
            "calibration_chosen": calibration.get("chosen"),
            "val_sweep": calibration.get("sweep") or [],
            "test_sweep": exits.get("test_sweep") or [],
            "warnings": list(r.warnings or []),
        })
    df = pd.DataFrame(rows)
    num = ["accuracy", "accuracy_lo", "accuracy_hi", "accuracy_no_exit", "size_bits", "size_bits_no_emb", "disk_bytes",
           "params", "macs", "bops", "flops", "ops", "macs_reduction", "latency_ms", "latency_p90_ms", "latency_lo",
           "latency_hi", "latency_ci_pct", "energy_j", "peak_rss_mib", "mean_exit", "n_blocks", "accuracy_n"]
    for c in num:
        if c in df:
            df[c] = pd.to_numeric(df[c], errors="coerce").astype(float)
    return df
