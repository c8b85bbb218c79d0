"""Registering a model part (exit rule, FFN, exit loss, sign estimator) in its registry at run time.

The registries add their built-ins and entry points on their first lookup; :func:`register_in`
looks up first, so a run-time registration comes after them (in ``names(sort=False)`` and the
"use one of" hints) and cannot shadow a built-in silently - as ``register_task`` does for tasks.
"""
from __future__ import annotations

from typing import Any, Callable

from .._registry import Registry


def register_in(registry: Registry, name: str, obj: Any = None, *, replace: bool = False) -> Any:
    """Register ``obj`` under ``name`` (usable as a decorator when ``obj`` is None). A name already
    taken (built-in, entry point or an earlier call) raises ``ValueError`` unless ``replace=True``."""

    def add(target: Any) -> Any:
        if name in registry:
            if not replace:
                raise ValueError(f"{registry.kind} {name!r} is already registered (pass replace=True)")
            registry.unregister(name)
        registry.register(name)(target)
        return target

    return add if obj is None else add(obj)


def registrar(registry: Registry) -> Callable[..., Any]:
    """``register_in`` bound to ``registry``: ``register(name, obj=None, *, replace=False)``."""

    def register(name: str, obj: Any = None, *, replace: bool = False) -> Any:
        return register_in(registry, name, obj, replace=replace)

    register.__doc__ = (f"Register a {registry.kind} under ``name`` (a decorator when ``obj`` is None); "
                        f"a name already taken raises ValueError unless ``replace=True``.")
    return register
