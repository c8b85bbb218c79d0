"""The model registry: every model is an entry point of group ``beexbench.adapters`` - the
built-ins (beexformer and its variants, the packed deployments, the baselines) in beexbench's own
pyproject.toml, the way a third party adds one too - loaded on first lookup, so importing a module
registers nothing; ``register_model`` for code that adds its own at run time. An entry point
added to pyproject.toml is seen after ``pip install -e .`` (the installed metadata lists them)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, TypeVar

from .._registry import Entry, Registry
from ..errors import BeexError
from .base import ModelAdapter, TaskSpec
from .spec import ModelSpec

ENTRY_POINT_GROUP = "beexbench.adapters"

def _check_adapter(entry: Entry, cls: Any) -> type[ModelAdapter]:
    """A ModelAdapter subclass, named as registered: an entry point may reuse a class under
    another name (the entry point's name is the model's), which gets a subclass of its own."""
    if not (isinstance(cls, type) and issubclass(cls, ModelAdapter)):
        raise BeexError(f"model '{entry.name}' ({entry.origin}) is not a beexbench ModelAdapter subclass")
    if cls.name != entry.name:
        cls = type(cls.__name__, (cls,), {"name": entry.name, "__doc__": cls.__doc__, "__module__": cls.__module__})
    return cls


# Every model - beexformer and its variants, the baselines, a third party's - is an entry point of
# the group (pyproject.toml): one route, loaded on first lookup (`beexbench --help` imports no torch)
ADAPTERS: Registry[type[ModelAdapter]] = Registry("model", entry_point_group=ENTRY_POINT_GROUP, check=_check_adapter)

A = TypeVar("A", bound=type)


def register_model(name: str) -> Callable[[A], A]:
    """Class decorator: ``@register_model("my-model")``. The class's ``name`` is set to it."""

    def deco(cls: A) -> A:
        cls.name = name
        return ADAPTERS.register(name)(cls)

    return deco


def get_adapter_class(name: str) -> type[ModelAdapter]:
    """The model class registered as ``name`` (checked, and named as registered, on first use)."""
    return ADAPTERS.get(name)


def list_models() -> list[str]:
    return ADAPTERS.names()


def create_model(name: str, spec: TaskSpec, overrides: "dict[str, Any] | ModelSpec | None" = None, *,
                 seed: int | None = None) -> ModelAdapter:
    """Build an untrained model by name: its registered settings (``default_spec``) with
    ``overrides`` - for a ModelSpec model a partial ModelSpec as nested dicts (a suite's
    ``[model]`` table, say) or a whole :class:`ModelSpec`. With ``seed`` it is exactly what
    ``beexbench run`` builds for that seed and those settings: the seed is put where the model
    takes it (``train.seed``) and torch's RNG is seeded before the build (same initial weights)."""
    cls = get_adapter_class(name)
    if seed is None:
        return cls.build(cls.resolve_settings(overrides, spec.problem), spec)
    import torch

    overrides = with_seed(cls, overrides, seed)
    torch.manual_seed(seed)
    return cls.build(cls.resolve_settings(overrides, spec.problem), spec)  # the overrides resolved once, here


def with_seed(cls: type[ModelAdapter], overrides: "dict[str, Any] | ModelSpec | None", seed: int) -> "dict[str, Any] | ModelSpec":
    """``overrides`` with the run's seed where the model takes it: ``train.seed`` of a ModelSpec
    model; a model with settings of its own (``uses_model_spec = False``) takes none."""
    if isinstance(overrides, ModelSpec):
        return overrides.merged({"train": {"seed": seed}}) if cls.uses_model_spec else overrides
    out = dict(overrides or {})
    if cls.uses_model_spec:
        out["train"] = {**out.get("train", {}), "seed": seed}
    return out


def load_model(directory: Path) -> ModelAdapter:
    """Load a checkpoint written by any registered adapter."""
    from .checkpoint import read_meta

    doc = read_meta(Path(directory))
    return get_adapter_class(str(doc.get("adapter"))).load(Path(directory))
