"""Saved cell records -> one tidy pandas DataFrame (one row per cell)."""
from __future__ import annotations

import hashlib
import math
import json
from dataclasses import dataclass

import pandas as pd

from ..adapters.roles import BASELINE, REFERENCE_FLOOR, recorded_role
from ..results.columns import columns
from ..results.context import EnvironmentInfo, ModelInfo, TargetInfo
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


def num(v) -> float:
    """A frame cell as a float (NaN for None, text or anything else that is not a number)."""
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


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
    env = EnvironmentInfo.of(record.environment)
    what = "unknown CPU" if env.cpu_model is None else env.cpu_model
    if TargetInfo.of(record.target).device.startswith("cuda") and env.gpu_names and env.gpu_names[0]:
        what = str(env.gpu_names[0])
    if env.ray_node_id and env.node_name:
        what = f"{what} on node {env.node_name}"
    return what


def target_label(record: CellRecord) -> str:
    hw = hardware(record)
    info = TargetInfo.of(record.target)
    if info.board and not info.emulated:  # measured on a real edge board (targets/boards.py)
        return f"{record.key.target} · on a {info.board} board ({hw})"
    return f"{record.key.target} · {'emulated on ' if info.emulated else ''}{hw}"


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
    """The frame's columns read from a record's typed metrics (a failed cell has none), as the
    metric declarations say (:mod:`beexbench.results.columns`)."""
    return {c.name: c.value(m) for c in columns()}


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
            "label": model_label(r.key.model, r.key.setting, (info := ModelInfo.of(r.model)).teacher) + fallback_suffix(r),
            "target_label": target_label(r),
            "hardware": hardware(r),
            "emulated": TargetInfo.of(r.target).emulated,
            "status": r.status,
            "error": r.error,
            "finished_at": r.finished_at or "",
            "description": info.description,
            "role": info.role,  # as recorded (see model_roles)
            "config_id": config_id(r.model),
            **_metric_columns(r.metrics),
            "warnings": list(r.warnings or []),
        })
    df = pd.DataFrame(rows)
    num = [c.name for c in columns() if c.numeric]
    for c in num:
        if c in df:  # a number that was not finite when measured (null in the file) is shown as missing
            df[c] = pd.to_numeric(df[c], errors="coerce").astype(float).replace([math.inf, -math.inf], math.nan)
    return df
