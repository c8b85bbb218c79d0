"""Targets by name, on the project's generic :class:`~beexbench._registry.Registry`: the
built-ins below (loaded on first lookup: importing a module registers nothing), the
``beexbench.targets`` entry-point group, and ``register_target`` for code that adds its own."""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from beexbench._registry import Registry
from beexbench.errors import BeexError

if TYPE_CHECKING:
    from beexbench.targets.base import Target

BUILTIN_TARGETS = {
    "cpu": "beexbench.targets.cpu:cpu",
    "cuda": "beexbench.targets.cuda:cuda",
    "edge-1t": "beexbench.targets.edge:edge_1t",
    "edge-2t": "beexbench.targets.edge:edge_2t",
    "rpi4-like": "beexbench.targets.edge:rpi4_like",
    # real boards (boards.py): available only when this machine is that board
    "board": "beexbench.targets.boards:board",
    "rpi4": "beexbench.targets.boards:rpi4",
    "rpi5": "beexbench.targets.boards:rpi5",
    "jetson-nano": "beexbench.targets.boards:jetson_nano",
    "jetson-orin-nano": "beexbench.targets.boards:jetson_orin_nano",
}
TARGETS: Registry[Callable[..., "Target"]] = Registry("target", entry_point_group="beexbench.targets",
                                                      builtins=BUILTIN_TARGETS)


def register_target(name: str):
    """Register ``factory(**overrides) -> Target`` under ``name``."""
    return TARGETS.register(name)


def list_targets(available_only: bool = False) -> list[str]:
    """Registered target names (only those usable on this machine with ``available_only``)."""
    names = TARGETS.names()
    if available_only:
        names = [n for n in names if TARGETS.get(n)().available()[0]]
    return names


def get_target(name: "str | Target", **overrides) -> "Target":
    """Build the target ``name`` with ``overrides``; a Target passes through unchanged.

    Raises :class:`~beexbench.errors.UnknownNameError` (with suggestions) for an unknown name. A
    target that cannot run here (``cuda`` without a GPU) is still built, so it can be listed and
    described; using it (``activate()``, any profiler) raises :class:`BeexError` with the reason,
    and ``target.require_available()`` does so up front.
    """
    from beexbench.targets.base import Target

    if isinstance(name, Target):
        if overrides:
            raise BeexError(f"cannot apply overrides {sorted(overrides)} to an already built target")
        return name
    factory = TARGETS.get(name)
    try:
        return factory(**overrides)
    except TypeError as err:
        raise BeexError(f"bad option for target {name!r}: {err}") from err
