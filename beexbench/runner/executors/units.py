"""Training units: the models of one (task, seed) that must train in one task, in order.

A model can need other trained models of the run: the source it is derived from (``derived_from``),
a network to start from or a teacher (``trained_inputs``: ``model.backbone.init_from``,
``model.distill.teacher``). ``obtain_model`` trains what a model needs first, so two tasks that
each obtained a model sharing a need would both train it. A unit gathers every model linked by
needs (a connected group), so each checkpoint of a run is trained by exactly one task.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ...config import RunConfig
from ...data.tasks import model_recipe
from ...results.schema import CellKey
from ..models import trained_from, walk_needs


def needs(model: str, cfg: RunConfig, task: str, seed: int, problem: str) -> list[str]:
    """The models ``model`` is trained (or derived) from, as ``obtain_model`` asks for them."""
    return list(dict.fromkeys(trained_from(model, cfg, seed, model_recipe(task), problem).values()))


def closure(model: str, cfg: RunConfig, task: str, seed: int, problem: str) -> list[str]:
    """``model`` and everything it needs, needs first (the one walker, :func:`..models.walk_needs`).
    A cycle stops the walk (``obtain_model`` then fails that model with its own one-line error)."""
    return walk_needs(model, lambda name: needs(name, cfg, task, seed, problem))


@dataclass
class Unit:
    """One training task: ``models`` (needs first) for ``task`` and ``seed``; ``cells`` wait for it."""

    task: str
    seed: int
    models: list[str] = field(default_factory=list)
    cells: list[CellKey] = field(default_factory=list)


def training_units(keys: list[CellKey], cfg: RunConfig, problems: dict[str, str]) -> list[Unit]:
    """The units covering ``keys``: models linked by needs, on the same task and seed, share one.
    ``problems``: each task's declared problem (what ``trained_inputs`` reads)."""
    units: list[Unit] = []
    for key in keys:
        models = closure(key.model, cfg, key.task, key.seed, problems[key.task])
        linked = [u for u in units if u.task == key.task and u.seed == key.seed and set(u.models) & set(models)]
        unit = Unit(key.task, key.seed)
        for other in linked:  # each list holds whole closures, needs first: concatenating keeps that order
            unit.models += [m for m in other.models if m not in unit.models]
            unit.cells += other.cells
            units.remove(other)
        unit.models += [m for m in models if m not in unit.models]
        unit.cells.append(key)
        units.append(unit)
    return units
