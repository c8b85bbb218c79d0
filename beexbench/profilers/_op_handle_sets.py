"""The op handles of one analysis, assembled when a model is counted (fvcore style: the
handles are passed to the analysis, no global table is edited by importing anything).

:func:`handles_for` returns, later entries replacing earlier ones of the same op name:

1. the base set: torch's ops (:data:`._op_handles.ATEN_HANDLES`) and torch's dynamic
   quantized Linear modules (:mod:`._op_handles_quantized`);
2. handles registered with :func:`register_op_handle` (explicit calls only, for
   interactive use and tests; nothing in beexbench calls it);
3. what the model being counted contributes: every module class in its module tree that
   defines ``op_handles()`` (for example the packed engine's ``PackedLinear`` and
   ``PackedQK``, the weight-only baselines' ``WeightOnlyLinear``), then what the adapter
   declares (``ModelAdapter.op_handles()``, none by default);
4. the ``handles`` argument of ``count_ops`` / ``DepthCost.measure``.

``op_handles`` is a method (static, class or instance) returning a mapping
``{"<namespace>::<op>" or "prim::PythonOp.<Function>": handle}``, or such a mapping.
So a model's ops are counted the same whatever else has been imported.

Trace stand-ins work the same way: a module that the tracer cannot capture is replaced,
while tracing, by what its ``trace_stand_in()`` returns, or by a base stand-in (torch's
dynamic int8 Linear).
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

from torch import nn

from . import _op_handles_quantized as _quantized
from ._op_handles import ATEN_HANDLES, Handle

_REGISTERED: dict[str, Handle] = {}  # explicit register_op_handle calls only
_BASE_STAND_INS: tuple[Callable[[nn.Module], nn.Module | None], ...] = (_quantized.stand_in,)


def base_handles() -> dict[str, Handle]:
    """The base set: handles of torch's own ops and quantized modules."""
    return {**ATEN_HANDLES, **_quantized.HANDLES}


def register_op_handle(name: str, fn: Handle | None) -> None:
    """Add or replace the handle of a traced op kind (``"aten::foo"``, ``"quantized::bar"``,
    ``"prim::PythonOp.MyFunction"``) for every later analysis in this process; ``None``
    removes it. A model's own ops are better declared by its modules or adapter
    (``op_handles()``, see the module docstring): those count whatever was imported."""
    if fn is None:
        _REGISTERED.pop(name, None)
    else:
        _REGISTERED[name] = _checked(name, fn, "register_op_handle")


def registered_op_handles() -> dict[str, Handle]:
    """A copy of the handles added with :func:`register_op_handle`."""
    return dict(_REGISTERED)


def _checked(name: Any, fn: Any, where: str) -> Handle:
    if not isinstance(name, str) or not callable(fn):
        raise TypeError(f"{where}: an op handle is a str op name -> callable(inputs, outputs), got {name!r}: {fn!r}")
    return fn


def _table(table: Any, where: str) -> dict[str, Handle]:
    """A declared handle table, checked (``None``: none)."""
    if table is None:
        return {}
    if not isinstance(table, Mapping):
        raise TypeError(f"{where} must give a mapping op name -> handle, got {type(table).__name__}")
    return {name: _checked(name, fn, where) for name, fn in table.items()}


def declared_handles(obj: Any) -> dict[str, Handle]:
    """What a module's class-level ``op_handles`` (a method or a mapping) contributes (``{}`` when
    it declares none). Modules may declare it; adapters always do (:func:`adapter_handles`)."""
    declared = getattr(obj, "op_handles", None)
    return _table(declared() if callable(declared) else declared, f"{type(obj).__name__}.op_handles")


def adapter_handles(adapter: Any) -> dict[str, Handle]:
    """What the adapter declares with :meth:`~beexbench.adapters.base.ModelAdapter.op_handles`
    (``{}`` or ``None``: none)."""
    return _table(adapter.op_handles(), f"{type(adapter).__name__}.op_handles()")


def module_handles(module: nn.Module) -> dict[str, Handle]:
    """Handles contributed by the module classes of ``module``'s tree (each class once,
    in module order)."""
    out: dict[str, Handle] = {}
    seen: set[type] = set()
    for mod in module.modules():
        cls = type(mod)
        if cls in seen:
            continue
        seen.add(cls)
        if getattr(cls, "op_handles", None) is not None:  # on the class: not a submodule's name
            out.update(declared_handles(mod))
    return out


def handles_for(adapter: Any = None, module: nn.Module | None = None,
                extra: Mapping[str, Handle] | None = None) -> dict[str, Handle]:
    """The handles of one analysis of ``adapter`` (running ``module``)."""
    handles = base_handles()
    handles.update(_REGISTERED)
    if module is not None:
        handles.update(module_handles(module))
    if adapter is not None:
        handles.update(adapter_handles(adapter))
    if extra:
        handles.update({name: _checked(name, fn, "handles") for name, fn in extra.items()})
    return handles


def stand_in_for(module: nn.Module) -> nn.Module | None:
    """The module the tracer should see in place of ``module`` (None: itself)."""
    own = getattr(type(module), "trace_stand_in", None)
    if own is not None:
        return module.trace_stand_in()
    for make in _BASE_STAND_INS:
        replacement = make(module)
        if replacement is not None:
            return replacement
    return None
