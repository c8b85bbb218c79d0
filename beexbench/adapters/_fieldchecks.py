"""Field checks that know nothing of models: whether a value fits its type annotation
(:func:`type_problems`) and the value checks the model settings compose (:func:`num`,
:func:`named`, :func:`grid`, :func:`sha256`, :func:`model_name`). Each returns the problems it
finds, one line each ([] when none), naming the field at ``where``. Used by
:mod:`beexbench.adapters._sections` (which field gets which) and :mod:`beexbench.adapters.spec`."""
from __future__ import annotations

import functools
import math
import types
import typing
from typing import Any, Callable, Literal, Union

from .._checks import bounded

Check = Callable[[str, Any], list]


# -- does a value fit its annotation -------------------------------------------------------
@functools.cache
def type_hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def fits(hint: Any, value: Any) -> bool:
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        return any(fits(h, value) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if origin is Literal:  # 1 is not True, 1.0 is not 1
        return any(value == a and type(value) is type(a) for a in typing.get_args(hint))
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint if origin is None else origin)


def literals(hint: Any) -> tuple | None:
    if typing.get_origin(hint) is Literal:
        return typing.get_args(hint)
    if typing.get_origin(hint) in (Union, types.UnionType):
        found = [a for h in typing.get_args(hint) for a in (literals(h) or ())]
        return tuple(found) or None
    return None


def type_problems(where: str, hint: Any, value: Any) -> list[str]:
    if fits(hint, value):
        return []
    options = literals(hint)
    if options is not None:
        return [f"'{where}' is {value!r}: use one of {', '.join(map(str, options))}"]
    names = [getattr(h, "__name__", str(h)) for h in typing.get_args(hint) if h is not type(None)] or [hint.__name__]
    return [f"'{where}' must be {' or '.join(names)}, got {type(value).__name__} ({value!r})"]


# -- value checks --------------------------------------------------------------------------
def num(low=None, high=None, *, above=False, below=False, integer=False, optional=False) -> Check:
    return lambda where, v: bounded(where, v, low, high, above=above, below=below, integer=integer, optional=optional)


def grid(where: str, value: Any) -> list[str]:
    ok = value is None or (isinstance(value, (list, tuple)) and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value))
    return [] if ok else [f"'{where}' must be a list of finite numbers, got {list(value) if isinstance(value, tuple) else value!r}"]


def named(registry) -> Check:
    """A name ``registry`` knows: a built-in, an entry point or one registered at run time."""
    def check(where: str, value: Any) -> list[str]:
        if isinstance(value, str) and value in registry:
            return []
        return [f"'{where}' is {value!r}: use one of {', '.join(registry.names(sort=False))}"]
    return check


def sha256(where: str, value: Any) -> list[str]:
    if value is None or (isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value)):
        return []
    return [f"'{where}' must be the weights file's sha256 (64 lowercase hex digits), got {value!r}"]


def model_name(where: str, value: Any) -> list[str]:
    """A model's name (or None); whether it is registered is checked when the run builds it."""
    return [] if value is None or (isinstance(value, str) and value.strip()) else [f"'{where}' must be a model name, got {value!r}"]
