"""Targets by name: ``@register_target`` in the tree, ``beexbench.targets`` entry points outside it."""
from __future__ import annotations

import difflib
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Callable

from beexbench.errors import BeexError, UnknownNameError

if TYPE_CHECKING:
    from beexbench.targets.base import Target

_FACTORIES: dict[str, Callable[..., "Target"]] = {}
_PLUGINS_LOADED = False


def register_target(name: str):
    """Register ``factory(**overrides) -> Target`` under ``name``."""

    def deco(factory: Callable[..., "Target"]):
        if name in _FACTORIES and _FACTORIES[name] is not factory:
            raise ValueError(f"target {name!r} is already registered")
        _FACTORIES[name] = factory
        return factory

    return deco


def _load_plugins() -> None:
    global _PLUGINS_LOADED
    if _PLUGINS_LOADED:
        return
    _PLUGINS_LOADED = True
    for ep in entry_points(group="beexbench.targets"):
        if ep.name not in _FACTORIES:
            _FACTORIES[ep.name] = ep.load()


def list_targets(available_only: bool = False) -> list[str]:
    """Registered target names (only those usable on this machine with ``available_only``)."""
    _load_plugins()
    names = sorted(_FACTORIES)
    if available_only:
        names = [n for n in names if _FACTORIES[n]().available()[0]]
    return names


def get_target(name: "str | Target", **overrides) -> "Target":
    """Build the target ``name`` with ``overrides``; a Target passes through unchanged.

    Raises :class:`UnknownNameError` (with suggestions) for an unknown name and :class:`BeexError`
    when the target cannot run here (e.g. ``cuda`` without a GPU).
    """
    from beexbench.targets.base import Target

    if isinstance(name, Target):
        if overrides:
            raise BeexError(f"cannot apply overrides {sorted(overrides)} to an already built target")
        return name
    _load_plugins()
    if name not in _FACTORIES:
        close = difflib.get_close_matches(name, list(_FACTORIES), n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(repr(c) for c in close)}? " if close else ""
        raise UnknownNameError(f"unknown target {name!r}: {hint}(known: {', '.join(sorted(_FACTORIES))})")
    try:
        target = _FACTORIES[name](**overrides)
    except TypeError as err:
        raise BeexError(f"bad option for target {name!r}: {err}") from err
    ok, reason = target.available()
    if not ok:
        raise BeexError(reason)
    return target
