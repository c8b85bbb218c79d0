"""Typed views of a record's context sections (``model``, ``target``, ``environment``): what the
report and the executors read from them, by name, instead of chains of ``.get``.

The sections stay the JSON objects they always were (every key kept, older records read as
before); these views read the keys beexbench itself writes and give None (or the documented
default) for one a record lacks or holds with another type - never an error, so that no record
that read before stops reading. Keys: docs/RESULTS.md."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping


def _at(d: Any, *path: str, kind: type | tuple[type, ...] = object) -> Any:
    for p in path:
        if not isinstance(d, Mapping) or p not in d:
            return None
        d = d[p]
    return d if isinstance(d, kind) else None


@dataclass(frozen=True)
class ModelInfo:
    """``record.model``: the model's description, role, training and where it was stored."""

    name: str | None
    description: str
    role: str  # as its adapter declares it ("model" for records written before roles)
    teacher: str | None  # config.distill.teacher: trained by knowledge distillation from it
    checkpoint: str | None
    trained_this_run: bool | None

    @classmethod
    def of(cls, model: Mapping[str, Any] | None) -> "ModelInfo":
        return cls(name=_at(model, "name", kind=str), description=str(_at(model, "description") or ""),
                   role=str(_at(model, "role") or "model"), teacher=_at(model, "config", "distill", "teacher", kind=str) or None,
                   checkpoint=_at(model, "checkpoint", kind=str),
                   trained_this_run=_at(model, "trained_this_run", kind=bool))


@dataclass(frozen=True)
class TargetInfo:
    """``record.target``: the target as the run described it."""

    device: str
    emulated: bool
    board: str | None = None  # a real edge board's model, when measured on it (targets/boards.py)

    @classmethod
    def of(cls, target: Mapping[str, Any] | None) -> "TargetInfo":
        board = _at(target, "board", "model", kind=str) if _at(target, "board", "detected") is True else None
        return cls(device=str(_at(target, "device") or ""), emulated=bool(_at(target, "emulated") or False), board=board)


@dataclass(frozen=True)
class EnvironmentInfo:
    """``record.environment``: the machine and software that measured the cell."""

    cpu_model: str | None
    gpu_names: tuple[str | None, ...]  # None: a GPU entry without a name
    node_name: str | None  # the cluster node (Ray), None when measured in the run's own process
    ray_node_id: str | None
    beexbench_version: str | None
    git_commit: str | None

    @classmethod
    def of(cls, env: Mapping[str, Any] | None) -> "EnvironmentInfo":
        gpus = _at(env, "gpus", kind=list) or []
        return cls(cpu_model=None if _at(env, "cpu", "model") is None else str(_at(env, "cpu", "model")),
                   gpu_names=tuple(_at(g, "name") for g in gpus),
                   node_name=None if _at(env, "node", "name") is None else str(_at(env, "node", "name")),
                   ray_node_id=_at(env, "node", "ray_node_id") or None,
                   beexbench_version=_at(env, "packages", "beexbench"), git_commit=_at(env, "git", "commit"))
