"""The versioned result schema: one JSON record per cell (model x task x target x setting).

This is the single source of truth: reports read only these files. Every key is
documented in ``docs/RESULTS.md``; :func:`validate` refuses foreign or newer files with a
one-line error.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from .._io import safe_name
from ..errors import BeexError

SCHEMA = "beexbench-result"
SCHEMA_VERSION = 2
# 2: strict JSON: a NaN or infinite number is written as null, and the record's top-level
#    ``null_reasons`` maps its JSON Pointer to why (e.g. "/metrics/accuracy/value")
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


@dataclass
class CellRecord:
    key: CellKey
    run_id: str
    status: str = "ok"  # "ok" | "failed"
    error: str | None = None
    model: dict[str, Any] = field(default_factory=dict)  # adapter, origin, config, fit, checkpoint
    task: dict[str, Any] = field(default_factory=dict)  # the task card
    target: dict[str, Any] = field(default_factory=dict)  # target.describe()
    metrics: dict[str, Any] = field(default_factory=dict)  # accuracy, size, ops, latency, memory, energy, exits
    environment: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    started_at: str = ""
    finished_at: str = ""
    null_reasons: dict[str, str] = field(default_factory=dict)  # JSON Pointer of a null -> why (written by the store)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["key"] = self.key.to_dict()
        return {"schema": SCHEMA, "schema_version": SCHEMA_VERSION, **d}

    @classmethod
    def from_dict(cls, doc: dict, *, source: str = "record") -> "CellRecord":
        validate(doc, source=source)
        body = {k: v for k, v in doc.items() if k not in ("schema", "schema_version")}
        try:
            body["key"] = CellKey(**body["key"])
            return cls(**body)
        except (KeyError, TypeError) as exc:
            raise BeexError(f"{source} does not follow the beexbench result schema ({exc}): re-run the cell") from None


def validate(doc: Any, *, source: str) -> None:
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
        raise BeexError(f"{source} is not a beexbench result file: point at a folder written by `beexbench run`")
    version = doc.get("schema_version")
    if not isinstance(version, int) or version > SCHEMA_VERSION:
        raise BeexError(f"{source} has result schema version {version}; this beexbench reads up to {SCHEMA_VERSION}: upgrade beexbench")
