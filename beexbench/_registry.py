"""One generic registry for every seam (models, tasks, targets, executors, backbones, exit rules,
FFNs, losses, estimators).

Entries come from the registry's built-in table and its entry-point group, both lazily as
``"module:attr"`` strings (so ``beexbench --help`` imports nothing heavy) and only on the first
lookup (importing a module registers nothing), or from code through :meth:`Registry.register`.
An unknown name raises :class:`UnknownNameError` with the closest known names. A registry's
``check`` vets each object once, when it is first loaded: a plugin entry of the wrong kind is a
one-line :class:`BeexError` naming where it comes from, never a traceback later.
"""
from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, Callable, Generic, Mapping, TypeVar

from .errors import BeexError, UnknownNameError

T = TypeVar("T")


# the origin of an entry added by register() in this process: a fresh process does not have it
REGISTERED_AT_RUN_TIME = "registered at run time"


@dataclass
class Entry(Generic[T]):
    name: str
    target: T | str  # the object, or "module:attr" until first use
    defaults: dict[str, Any] = field(default_factory=dict)
    origin: str = "builtin"  # "builtin", "entry-point:<dist>" or REGISTERED_AT_RUN_TIME
    checked: bool = False  # whether the registry's check has passed the loaded object

    def load(self) -> T:
        if isinstance(self.target, str):
            module_name, _, attr = self.target.partition(":")
            try:
                obj = getattr(importlib.import_module(module_name), attr)
            except Exception as exc:  # a plugin may raise anything at import: one line, not a traceback
                raise BeexError(
                    f"cannot load '{self.name}' from {self.target} ({self.origin}): {type(exc).__name__}: "
                    f"{str(exc).splitlines()[0] if str(exc) else ''}; reinstall the package that provides it or remove it"
                ) from exc
            self.target = obj
        return self.target  # type: ignore[return-value]


class Registry(Generic[T]):
    def __init__(self, kind: str, entry_point_group: str | None = None,
                 builtins: Mapping[str, str] | None = None,
                 check: Callable[[Entry[T], Any], T] | None = None) -> None:
        """``builtins``: in-tree entries as ``{name: "module:attr"}``, added (before the entry
        points, and without importing anything) on the registry's first lookup. ``check``: called
        with the entry and its loaded object on the first :meth:`get`; returns what ``get`` gives
        from then on (the object, or one adjusted to its name) or raises a one-line BeexError."""
        self.kind = kind
        self._check = check
        self.entry_point_group = entry_point_group
        self._entries: dict[str, Entry[T]] = {}
        self._builtins = dict(builtins or {})
        self._entry_points_loaded = entry_point_group is None and not self._builtins

    def register(self, name: str | None = None, **defaults: Any) -> Callable[[T], T]:
        """Decorator: ``@REGISTRY.register("name", max_len=64)``."""

        def deco(obj: T) -> T:
            key = name or getattr(obj, "__name__", None)
            if not key:
                raise ValueError("register() needs a name")
            self._add(Entry(key, obj, dict(defaults), origin=REGISTERED_AT_RUN_TIME))
            return obj

        return deco

    def register_lazy(self, name: str, target: str, **defaults: Any) -> None:
        self._add(Entry(name, target, dict(defaults)))

    def _add(self, entry: Entry[T]) -> None:
        self._load_entry_points()  # built-ins and entry points first: a taken name is refused, never shadowed
        old = self._entries.get(entry.name)
        if old is not None and old.target is not entry.target and old.target != entry.target:
            raise BeexError(f"{self.kind} '{entry.name}' is registered twice ({old.origin}, {entry.origin})")
        self._entries[entry.name] = entry

    def _load_entry_points(self) -> None:
        if self._entry_points_loaded:
            return
        self._entry_points_loaded = True
        for name, target in self._builtins.items():
            self._entries.setdefault(name, Entry(name, target))
        if self.entry_point_group is None:
            return
        for ep in metadata.entry_points(group=self.entry_point_group):
            if ep.name in self._entries:
                continue
            dist = getattr(getattr(ep, "dist", None), "name", "?")
            self._entries[ep.name] = Entry(ep.name, ep.value, {}, f"entry-point:{dist}")

    def names(self, *, sort: bool = True) -> list[str]:
        """Registered names, sorted (``sort=False``: built-ins, entry points, then the rest, in
        registration order)."""
        self._load_entry_points()
        return sorted(self._entries) if sort else list(self._entries)

    def unregister(self, name: str) -> None:
        """Forget ``name`` (no error when it is not registered)."""
        self._load_entry_points()
        self._entries.pop(name, None)

    def entry(self, name: str) -> Entry[T]:
        self._load_entry_points()
        try:
            return self._entries[name]
        except KeyError:
            close = difflib.get_close_matches(name, list(self._entries), n=3, cutoff=0.5)
            hint = f"did you mean {', '.join(close)}?" if close else f"known: {', '.join(sorted(self._entries))}"
            raise UnknownNameError(f"unknown {self.kind} '{name}': {hint} (see `beexbench list`)") from None

    def get(self, name: str) -> T:
        entry = self.entry(name)
        obj = entry.load()
        if self._check is not None and not entry.checked:
            obj = self._check(entry, obj)
            entry.target, entry.checked = obj, True
        return obj

    def __contains__(self, name: str) -> bool:
        self._load_entry_points()
        return name in self._entries
