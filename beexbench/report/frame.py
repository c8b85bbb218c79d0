"""Saved cell records -> one tidy pandas DataFrame (one row per cell)."""
from __future__ import annotations

import hashlib
import math
import json
from dataclasses import dataclass

import pandas as pd

from ..adapters.roles import BASELINE, REFERENCE_FLOOR, recorded_role
from ..results.metrics import CellMetrics
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
    """What the cell ran on, so that two machines' ``cpu`` targets stay apart: the GPU or CPU
    model, and for a cell measured on a cluster node (Ray) the node's name, so that two machines
    of the same model are two sections too."""
    env = record.environment or {}
    what = str(_get(env, "cpu", "model", default="unknown CPU"))
    if str(_get(record.target, "device", default="")).startswith("cuda"):
        gpus = env.get("gpus") or []
        name = _get(gpus[0], "name") if gpus and isinstance(gpus[0], dict) else None
        what = str(name) if name else what
    node = _get(env, "node", default={})
    if isinstance(node, dict) and node.get("ray_node_id") and node.get("name"):
        what = f"{what} on node {node['name']}"
    return what


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


def model_label(model: str, setting: str, teacher: str | None = None) -> str:
    """How a model's rows are named: with the suite setting when it is not the default, and
    ``(KD from T)`` when it was trained by knowledge distillation from teacher T."""
    label = model if setting in ("", "default") else f"{model} ({setting})"
    return f"{label} (KD from {teacher})" if teacher else label


def config_id(model: dict) -> str:
    """A short hash of what the model was built and trained with (its recorded config), less
    what differs between the seeds of one configuration: the seed and the calibrated exit value."""
    cfg = {k: dict(v) if isinstance(v, dict) else v for k, v in ((model or {}).get("config") or {}).items()}
    cfg.get("train", {}).pop("seed", None)
    cfg.get("exit", {}).pop(str(cfg.get("calibration", {}).get("param")), None)
    return hashlib.sha256(json.dumps(cfg, sort_keys=True, default=str).encode()).hexdigest()[:12]


def _metric_columns(m: CellMetrics | None) -> dict:
    """The frame's columns read from a record's typed metrics (a failed cell has none)."""
    if m is None:
        return {"metric": "accuracy", "accuracy": None, "accuracy_lo": None, "accuracy_hi": None, "accuracy_n": None,
                "accuracy_undefined": "", "accuracy_no_exit": None, "size_bits": None, "size_bits_no_emb": None,
                "disk_bytes": None, "params": None, "macs": None, "bops": None, "flops": None, "ops": None,
                "macs_reduction": None, "uncounted": {}, "latency_ms": None, "latency_p90_ms": None, "latency_lo": None,
                "latency_hi": None, "latency_ci_pct": None, "latency_threads": None, "latency_by_threads": {}, "energy_j": None, "energy_provenance": "not measured",
                "peak_rss_mib": None, "mean_exit": None, "n_blocks": None, "exit_histogram": [],
                "calibration_param": "delta", "calibration_chosen": None, "val_sweep": [], "test_sweep": []}
    acc, ops, lat, exits = m.accuracy, m.ops.per_sample_mean, m.batch1, m.exits
    calibration = exits.calibration if exits is not None else None
    rss = m.memory.peak_rss_bytes
    return {
        "metric": acc.metric,
        "accuracy": acc.value,
        "accuracy_lo": acc.ci95[0],
        "accuracy_hi": acc.ci95[1],
        "accuracy_n": acc.n,
        "accuracy_undefined": acc.undefined or "",  # why there is no value
        "accuracy_no_exit": m.accuracy_no_exit.value,
        "size_bits": m.size.total_bits,
        "size_bits_no_emb": m.size.total_bits_without_embeddings,
        "disk_bytes": m.size.disk_bytes,
        "params": m.size.params,
        # MACs that are not binary (fp32, w1a32, int8); binary x binary MACs are BOPs.
        "macs": ops.non_binary_macs,
        "bops": ops.bops,
        "flops": ops.flops,
        "ops": ops.ops,
        "macs_reduction": m.ops.macs_reduction_from_exits,
        "uncounted": dict(m.ops.uncounted),
        "latency_ms": lat.median,
        "latency_p90_ms": lat.p90,
        "latency_lo": lat.ci95_median[0],
        "latency_hi": lat.ci95_median[1],
        "latency_ci_pct": lat.ci_halfwidth_pct,
        "latency_threads": lat.threads,  # the fastest thread setting (the headline)
        # batch-1 median at every thread setting measured (records of schema 3; {} before)
        "latency_by_threads": {r.threads: r.median for r in m.latency_by_threads if r.batch_size == 1 and r.threads},
        "energy_j": m.energy.joules_per_sample if m.energy is not None else None,
        "energy_provenance": m.energy.provenance if m.energy is not None else "not measured",
        "peak_rss_mib": rss / 2**20 if rss else None,
        "mean_exit": exits.mean_exit_block if exits is not None else None,
        "n_blocks": exits.n_blocks if exits is not None else None,
        "exit_histogram": list(exits.histogram) if exits is not None else [],
        "calibration_param": calibration.param if calibration is not None else "delta",
        "calibration_chosen": calibration.chosen if calibration is not None else None,
        # sweep rows as they read in the file (the plots and the CSV export take them so)
        "val_sweep": [row.to_dict() for row in calibration.sweep] if calibration is not None else [],
        "test_sweep": [row.to_dict() for row in exits.test_sweep] if exits is not None and exits.test_sweep else [],
    }


def fallback_suffix(r: CellRecord) -> str:
    """`` [fallback: ...]`` for a cell measured on a slower path than its model's declared fast path
    (which the user allowed: docs/RESULTS.md, ``metrics.implementation``): its own row, labelled."""
    impl = r.metrics.implementation if r.metrics is not None else None
    return f" [{impl.label}]" if impl is not None and impl.fallback else ""


def records_frame(records: list[CellRecord]) -> pd.DataFrame:
    """One row per cell record with the numbers the report shows (raw units: bits, MACs, ms, J)."""
    rows = []
    for r in records:
        rows.append({
            "run_id": r.run_id,
            "model": r.key.model,
            "task": r.key.task,
            "target": r.key.target,
            "setting": r.key.setting,
            "seed": r.key.seed,
            "label": model_label(r.key.model, r.key.setting, _get(r.model, "config", "distill", "teacher"))
            + fallback_suffix(r),
            "target_label": target_label(r),
            "hardware": hardware(r),
            "emulated": bool(_get(r.target, "emulated", default=False)),
            "status": r.status,
            "error": r.error,
            "finished_at": r.finished_at or "",
            "description": str(_get(r.model, "description", default="")),
            "role": str(_get(r.model, "role", default="model")),  # as recorded (see model_roles)
            "config_id": config_id(r.model),
            **_metric_columns(r.metrics),
            "warnings": list(r.warnings or []),
        })
    df = pd.DataFrame(rows)
    num = ["accuracy", "accuracy_lo", "accuracy_hi", "accuracy_no_exit", "size_bits", "size_bits_no_emb", "disk_bytes",
           "params", "macs", "bops", "flops", "ops", "macs_reduction", "latency_ms", "latency_p90_ms", "latency_lo",
           "latency_hi", "latency_ci_pct", "energy_j", "peak_rss_mib", "mean_exit", "n_blocks", "accuracy_n"]
    for c in num:
        if c in df:  # a number that was not finite when measured (null in the file) is shown as missing
            df[c] = pd.to_numeric(df[c], errors="coerce").astype(float).replace([math.inf, -math.inf], math.nan)
    return df
