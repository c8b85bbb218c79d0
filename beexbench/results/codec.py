"""The JSON codec of the typed result records: each frozen dataclass's field annotations are
its schema, read and written by two generic functions, :func:`decode` and :func:`encode`.

Reading (:func:`decode`) checks every key against its annotation and stops at the first
problem with one line naming the file and the key's JSON Pointer (a :class:`RecordError`):

* a field without a default is **required**: a missing key is an error, never a guessed value;
* ``X | None`` means *optional by design* (e.g. no Pearson r for a constant prediction): the
  key must be there, ``null`` allowed. A field with the metadata :func:`absent_if_none` may also
  be left out of the file (e.g. no energy when it was not measured) and is not written when None;
* a ``null`` whose pointer the record's ``null_reasons`` explains (a number that was NaN or
  infinite when measured, schema version 2) is read back as that float (``nan``, ``inf``,
  ``-inf``), so writing the record again gives the same file;
* :func:`legacy` marks a key added in a later schema version: a record of an older version
  without it reads the documented default;
* keys no field names are kept in the section's ``extra`` and written back as they were.

Writing (:func:`encode`) gives the keys in field order, then ``extra``; a section that was
read keeps the order of the object it was read from, so a record read and written again is
the same file.
"""
from __future__ import annotations

import collections.abc
import dataclasses
import functools
import math
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal, Mapping, Union

from ..errors import BeexError

# one object each, so that two records read from the same text compare equal
NAN, INF, NEG_INF = math.nan, math.inf, -math.inf


class RecordError(BeexError):
    """A result record that does not follow the schema (one line: the file and the key)."""


@dataclass(frozen=True)
class Context:
    """Where a record comes from (for errors) and what its header says."""

    source: str = "record"
    version: int = 4  # beexbench.results.schema.SCHEMA_VERSION (a test keeps the two equal)
    null_reasons: Mapping[str, str] = field(default_factory=dict)

    def fail(self, pointer: str, problem: str) -> RecordError:
        return RecordError(f"{self.source} does not follow the beexbench result schema "
                           f"(version {self.version}): {pointer or '/'} {problem}: move it out of the run folder and "
                           "re-run that cell with `beexbench run --resume`")


def absent_if_none(**kw: Any) -> Any:
    """A key that may be left out of the file (None here, not written when None)."""
    return field(default=None, metadata={"absent_if_none": True}, **kw)


def legacy(default: Any, *, since: int) -> Any:
    """A key required from schema version ``since`` on; a record of an older version that
    lacks it reads ``default`` (documented in docs/RESULTS.md). ``default`` is also the
    constructor's default (it must be immutable)."""
    return field(default=default, metadata={"legacy": (since, default)})


def written(default: Any = dataclasses.MISSING, **kw: Any) -> Any:
    """A key every file has (missing: an error), with a default for the profiler that builds
    the section (``default`` immutable, or ``default_factory=``)."""
    return field(default=default, metadata={"written": True}, **kw)


class FrozenMap(dict):
    """A read-only mapping that pickles (a section's mapping field: Ray and the report's
    worker processes pickle records, which a ``MappingProxyType`` cannot)."""

    def _refuse(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError("a result section is read-only")

    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = __ior__ = _refuse  # type: ignore[assignment]

    def __reduce__(self):
        return (FrozenMap, (dict(self),))

    def __copy__(self) -> "FrozenMap":
        return self

    def __deepcopy__(self, memo: dict) -> "FrozenMap":
        import copy

        return FrozenMap(copy.deepcopy(dict(self), memo))


def extra_field() -> Any:
    """The section's keys that no field names, kept as read."""
    return field(default_factory=dict, repr=False, metadata={"extra": True})


def pointer(parent: str, key: Any) -> str:
    """RFC 6901: ``parent/key`` with ``~`` and ``/`` escaped."""
    return f"{parent}/{str(key).replace('~', '~0').replace('/', '~1')}"


@functools.lru_cache(maxsize=None)
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _nonfinite(reason: str) -> float:
    return INF if "+inf" in reason else NEG_INF if "-inf" in reason else NAN


def _describe(tp: Any) -> str:
    names = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}
    if tp in names:
        return names[tp]
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin is tuple:
        return "a list"
    if dataclasses.is_dataclass(tp) or origin in (dict, collections.abc.Mapping):
        return "an object"
    return str(tp)


def _found(value: Any) -> str:
    text = repr(value)
    return f"found {text[:40] + '...' if len(text) > 40 else text}"


def decode(tp: Any, value: Any, ptr: str, ctx: Context) -> Any:
    """``value`` (parsed JSON at ``ptr``) as an instance of the annotation ``tp``."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None:
            if ptr in ctx.null_reasons and float in args:
                return _nonfinite(ctx.null_reasons[ptr])
            if type(None) in args:
                return None
        options = [a for a in args if a is not type(None)]
        if len(options) == 1:
            return decode(options[0], value, ptr, ctx)
        for option in options:  # a union of sections: the one whose _accepts says so
            if isinstance(value, dict) and option._accepts(value):
                return decode(option, value, ptr, ctx)
        raise ctx.fail(ptr, f"is none of {', '.join(o.__name__ for o in options)} ({_found(value)})")
    if value is None:
        if tp is float and ptr in ctx.null_reasons:
            return _nonfinite(ctx.null_reasons[ptr])
        raise ctx.fail(ptr, f"is null, expected {_describe(tp)}")
    if dataclasses.is_dataclass(tp):
        return decode_section(tp, value, ptr, ctx)
    if tp is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif tp is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif tp in (str, bool):
        ok = isinstance(value, tp)
    elif origin is Literal:
        ok = value in typing.get_args(tp)
    elif origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ctx.fail(ptr, f"is not a list ({_found(value)})")
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(decode(args[0], v, pointer(ptr, i), ctx) for i, v in enumerate(value))
        if len(value) != len(args):
            raise ctx.fail(ptr, f"has {len(value)} items, expected {len(args)}")
        return tuple(decode(a, v, pointer(ptr, i), ctx) for i, (a, v) in enumerate(zip(args, value)))
    elif origin in (dict, collections.abc.Mapping):
        if not isinstance(value, dict):
            raise ctx.fail(ptr, f"is not an object ({_found(value)})")
        item = typing.get_args(tp)[1] if typing.get_args(tp) else Any
        return {k: decode(item, v, pointer(ptr, k), ctx) for k, v in value.items()}
    else:
        raise TypeError(f"the result codec cannot read {tp!r}")
    if not ok:
        raise ctx.fail(ptr, f"is not {_describe(tp)} ({_found(value)})")
    return value


def decode_section(cls: type, value: Any, ptr: str, ctx: Context) -> Any:
    """A section (frozen dataclass) from a JSON object, by its fields (or its own ``_decode``)."""
    if not isinstance(value, dict):
        raise ctx.fail(ptr, f"is not an object ({_found(value)})")
    if hasattr(cls, "_decode"):
        return cls._decode(value, ptr, ctx)
    return decode_fields(cls, value, ptr, ctx)


def decode_fields(cls: type, value: dict, ptr: str, ctx: Context) -> Any:
    """A section by its fields (what a section's own ``_decode`` may start from)."""
    hints, kwargs, known = _hints(cls), {}, set()
    for f in dataclasses.fields(cls):
        if f.metadata.get("extra") or f.metadata.get("hidden"):
            continue
        known.add(f.name)
        sub = pointer(ptr, f.name)
        if f.name in value:
            kwargs[f.name] = decode(hints[f.name], value[f.name], sub, ctx)
        elif "legacy" in f.metadata:
            since, default = f.metadata["legacy"]
            if ctx.version >= since:
                raise ctx.fail(sub, "is missing")
            kwargs[f.name] = default
        elif f.metadata.get("written") or (f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING):
            raise ctx.fail(sub, "is missing")
    rest = {k: v for k, v in value.items() if k not in known}
    if rest:
        kwargs["extra"] = rest
    return construct(cls, kwargs, ptr, ctx, order=value)


def construct(cls: type, kwargs: dict, ptr: str, ctx: Context, order: dict | None = None) -> Any:
    """``cls(**kwargs)``; a check of the section's own (``__post_init__``) is a RecordError.
    ``order``: the object read, whose key order the section keeps for writing it again."""
    try:
        obj = cls(**kwargs)
    except (ValueError, TypeError) as exc:
        raise ctx.fail(ptr, f"is inconsistent ({exc})") from None
    if order is not None:
        object.__setattr__(obj, "key_order", tuple(order))
    return obj


def encode(obj: Any) -> Any:
    """A section, tuple, mapping or plain value as JSON-ready Python (lists and dicts)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        if hasattr(obj, "_encode"):
            out = obj._encode()
        else:
            out = {}
            for f in dataclasses.fields(obj):
                value = getattr(obj, f.name)
                if f.metadata.get("extra") or f.metadata.get("hidden") or (value is None and f.metadata.get("absent_if_none")):
                    continue
                out[f.name] = encode(value)
            out = with_extra(out, getattr(obj, "extra", None))
        order = getattr(obj, "key_order", ())
        if order:  # as it was read (a checkpoint's sorted keys stay sorted)
            out = {**{k: out[k] for k in order if k in out}, **out}
        return out
    if isinstance(obj, (tuple, list)):
        return [encode(v) for v in obj]
    if isinstance(obj, collections.abc.Mapping):
        return {k: encode(v) for k, v in obj.items()}
    return obj


def with_extra(out: dict[str, Any], extra: Mapping[str, Any] | None) -> dict[str, Any]:
    for k, v in (extra or {}).items():
        out.setdefault(k, encode(v))
    return out


@dataclass(frozen=True, kw_only=True)
class Section:
    """Base of every typed part of a record: :meth:`from_dict` / :meth:`to_dict` round-trip."""

    extra: Mapping[str, Any] = extra_field()
    # the keys' order in the object it was read from (written in that order; not compared)
    key_order: tuple[str, ...] = field(default=(), repr=False, compare=False, metadata={"hidden": True})

    @classmethod
    def from_dict(cls, doc: Any, *, source: str = "record", at: str = "", version: int = 4,
                  null_reasons: Mapping[str, str] | None = None):
        """Read a section from parsed JSON found at the JSON Pointer ``at`` of ``source``; a
        problem is a one-line :class:`RecordError`."""
        return decode(cls, doc, at, Context(source, version, null_reasons or {}))

    def to_dict(self) -> dict[str, Any]:
        return encode(self)
