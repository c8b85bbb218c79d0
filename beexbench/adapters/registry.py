"""The model registry: the built-ins below and the baselines' entry points (group
``beexbench.adapters``, the way a third party adds a model) are loaded on first lookup, so
importing a module registers nothing; ``register_model`` for code that adds its own."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, TypeVar

from .._registry import Registry
from ..errors import BeexError
from .base import ModelAdapter, TaskSpec
from .spec import ModelSpec

# Built-in models as "module:Class" (loaded on first lookup, so `beexbench --help` imports no torch)
BUILTIN_MODELS = {
    "beexformer": "beexbench.models.beexformer:BEExformer",
    "beexformer-no-ee": "beexbench.models.beexformer:BEExformerNoEE",
    "beexformer-ffn": "beexbench.models.beexformer:BEExformerFFN",
    "beexformer-slfn3": "beexbench.models.beexformer:BEExformerSLFN3",
    "beexformer-ste": "beexbench.models.beexformer:BEExformerSTE",
    "beexformer-w1a32": "beexbench.models.beexformer:BEExformerW1A32",
    "beexformer-loss-depth": "beexbench.models.beexformer:BEExformerDepthLoss",
    "beexformer-loss-uniform": "beexbench.models.beexformer:BEExformerUniformLoss",
    "beexformer-loss-final": "beexbench.models.beexformer:BEExformerFinalLoss",
    "beexformer-a5": "beexbench.models.beexformer:BEExformerA5",
    "beexformer-kd": "beexbench.models.beexformer:BEExformerKD",
    "beexformer-slfn-ffn": "beexbench.models.beexformer:BEExformerOwnFFN",
    "beexformer-packed": "beexbench.engine.adapter:PackedBEExformer",
    "beexformer-packed-int4": "beexbench.engine.adapter:PackedBEExformerInt4",
    "beexformer-packed-fp32emb": "beexbench.engine.adapter:PackedBEExformerFP32Rows",
    "beexformer-a5-packed": "beexbench.engine.adapter:PackedBEExformerA5",
}
ADAPTERS: Registry[type[ModelAdapter]] = Registry("model", entry_point_group="beexbench.adapters",
                                                  builtins=BUILTIN_MODELS)

A = TypeVar("A", bound=type)


def register_model(name: str) -> Callable[[A], A]:
    """Class decorator: ``@register_model("my-model")``. The class's ``name`` is set to it."""

    def deco(cls: A) -> A:
        cls.name = name
        return ADAPTERS.register(name)(cls)

    return deco


def get_adapter_class(name: str) -> type[ModelAdapter]:
    cls = ADAPTERS.get(name)
    if not (isinstance(cls, type) and issubclass(cls, ModelAdapter)):
        raise BeexError(f"model '{name}' ({ADAPTERS.entry(name).origin}) is not a beexbench ModelAdapter subclass")
    if cls.name != name:
        # an entry point may reuse a class under another name: give it its own subclass
        cls = type(cls.__name__, (cls,), {"name": name, "__doc__": cls.__doc__, "__module__": cls.__module__})
        ADAPTERS._entries[name].target = cls
    return cls


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
        return cls.build(overrides or {}, spec)
    import torch

    overrides = with_seed(cls, overrides, seed)
    torch.manual_seed(seed)
    return cls.build(overrides, spec)


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
