"""The versioned result schema: one JSON record per cell (model x task x target x setting).

This is the single source of truth: reports read only these files. Every key is
documented in ``docs/RESULTS.md``; :func:`validate` refuses foreign or newer files with a
one-line error. A record's ``metrics`` are typed (:class:`~beexbench.results.metrics.CellMetrics`):
reading a record checks every key the schema requires, and a missing or mistyped one is a
one-line :class:`~beexbench.results.codec.RecordError` naming the file and the key.
"""
from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field
from typing import Any

from .._io import safe_name
from ..errors import BeexError
from .codec import Context, RecordError, decode_section
from .metrics import CellMetrics

SCHEMA = "beexbench-result"
SCHEMA_VERSION = 4
# 2: strict JSON: a NaN or infinite number is written as null, and the record's top-level
#    ``null_reasons`` maps its JSON Pointer to why (e.g. "/metrics/accuracy/value")
# 3: latency measured per thread setting in isolated processes: ``metrics.latency_by_threads``,
#    and ``wait_policy`` / ``isolated`` on every latency record
# 4: per-sample outputs (``metrics.samples``: answer, label, exit block per test sample, for paired
#    tests) and an early-exit model's static-depth reference (``metrics.static_depth``); both are
#    declared metrics, so a version-3 record (without them) reads unchanged
RUN_SCHEMA = "beexbench-run"


@dataclass(frozen=True)
class CellKey:
    model: str
    task: str
    target: str
    seed: int = 0
    setting: str = "default"

    @property
    def slug(self) -> str:
        """A file-name-safe identifier, one per cell: readable when every part is a plain
        name, else a hash of the full key is part of it (two keys never share a slug)."""
        return safe_name(f"{self.model}__{self.task}__{self.target}__seed{self.seed}__{self.setting}", keep=100)

    def to_dict(self) -> dict:
        return asdict(self)


STATUSES = ("ok", "failed")


@dataclass
class CellRecord:
    key: CellKey
    run_id: str
    status: str = "ok"  # "ok" | "failed"
    error: str | None = None
    model: dict[str, Any] = field(default_factory=dict)  # adapter, origin, config, fit, checkpoint
    task: dict[str, Any] = field(default_factory=dict)  # the task card
    target: dict[str, Any] = field(default_factory=dict)  # target.describe()
    metrics: CellMetrics | None = None  # None ({} in the file) exactly when the cell failed
    environment: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    started_at: str = ""
    finished_at: str = ""
    null_reasons: dict[str, str] = field(default_factory=dict)  # JSON Pointer of a null -> why (written by the store)

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"a cell's status is one of {', '.join(STATUSES)}, not {self.status!r}")
        if self.status == "ok" and self.metrics is None:
            raise ValueError("a finished (status ok) cell needs its metrics")

    def to_dict(self) -> dict:
        return {"schema": SCHEMA, "schema_version": SCHEMA_VERSION, "key": self.key.to_dict(), "run_id": self.run_id,
                "status": self.status, "error": self.error, "model": copy.deepcopy(self.model),
                "task": copy.deepcopy(self.task), "target": copy.deepcopy(self.target),
                "metrics": self.metrics.to_dict() if self.metrics is not None else {},
                "environment": copy.deepcopy(self.environment), "warnings": list(self.warnings),
                "started_at": self.started_at, "finished_at": self.finished_at, "null_reasons": dict(self.null_reasons)}

    @classmethod
    def from_dict(cls, doc: dict, *, source: str = "record") -> "CellRecord":
        """Read a record of any schema version this beexbench reads (1 and 2); a missing or
        mistyped key is a one-line :class:`RecordError` naming ``source`` and the key."""
        validate(doc, source=source)
        version = doc["schema_version"]
        ctx = Context(source, version, doc.get("null_reasons") or {})
        body = {k: v for k, v in doc.items() if k not in ("schema", "schema_version")}
        for name in ("key", "run_id"):
            if name not in body:
                raise ctx.fail(f"/{name}", "is missing")
        if not isinstance(body["key"], dict):
            raise ctx.fail("/key", "is not an object")
        metrics = body.get("metrics") or None
        if body.get("status", "ok") == "ok" and metrics is None:
            raise ctx.fail("/metrics", "is missing (a finished cell has its measurements)")
        body["metrics"] = None if metrics is None else decode_section(CellMetrics, metrics, "/metrics", ctx)
        try:
            body["key"] = CellKey(**body["key"])
            return cls(**body)
        except (KeyError, TypeError, ValueError) as exc:
            raise RecordError(f"{source} does not follow the beexbench result schema ({exc}): move it out of the run "
                              "folder and re-run that cell with `beexbench run --resume`") from None


def validate(doc: Any, *, source: str) -> None:
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
        raise BeexError(f"{source} is not a beexbench result file: point at a folder written by `beexbench run`")
    version = doc.get("schema_version")
    if not isinstance(version, int) or version > SCHEMA_VERSION:
        raise BeexError(f"{source} has result schema version {version}; this beexbench reads up to {SCHEMA_VERSION}: upgrade beexbench")
