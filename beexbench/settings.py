"""Every ``BEEXBENCH_*`` environment setting beexbench reads, with its one parser.

A setting is read through its typed getter here (e.g. :func:`build_timeout`), which raises a
one-line :class:`SettingError` (a :class:`~beexbench.errors.BeexError`: the CLI prints it and
exits 2) for a value it cannot use, never a silent default or a slower path; validation calls
:func:`problems` first, so a run with a bad setting stops before any work with every bad
setting named, one line each. An unset or empty variable means the setting's default.

===========================  ===================================================================
``BEEXBENCH_CACHE``          cache folder (datasets, backbones, native builds); an existing path
                             must be a folder. Default ``$XDG_CACHE_HOME/beexbench`` or
                             ``~/.cache/beexbench``
``BEEXBENCH_BUILD_TIMEOUT``  seconds to wait for another process's native build (a finite
                             number >= 0; default 600)
``BEEXBENCH_KERNELS``        packed-bit kernel backend: auto (default), fallback (also
                             torch-fallback, torch), portable, avx2, avx512-vpopcnt,
                             avx512-vnni
``BEEXBENCH_KERNELS_VERBOSE`` show the native compiler's output (a boolean, default off)
``BEEXBENCH_ENGINE``         the packed engine's path: auto (default: native when it can run),
                             steps (per-block C++ steps for every rule), python (module path)
``BEEXBENCH_ALLOW_FALLBACK`` a boolean (default off): run and label a model whose declared fast
                             path is unavailable on its slower path instead of failing its cell
``BEEXBENCH_CPU_TDP_W``      the CPU's TDP in watts for estimated energy (a finite number > 0,
                             at most 10000)
``BEEXBENCH_NODE_NAME``      a readable name for this machine (printable, at most 100 chars)
``BEEXBENCH_ISOLATED``       0 or 1; set to 1 by beexbench in its measuring processes
===========================  ===================================================================

Booleans are ``1``/``0``, ``true``/``false``, ``yes``/``no`` or ``on``/``off`` (any case). The
test suite also reads ``BEEXBENCH_NETWORK_TESTS`` and ``BEEXBENCH_TEST_BUILD_CACHE``; beexbench
itself does not.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Callable, Mapping

from .errors import BeexError

CACHE = "BEEXBENCH_CACHE"
BUILD_TIMEOUT = "BEEXBENCH_BUILD_TIMEOUT"
KERNELS = "BEEXBENCH_KERNELS"
KERNELS_VERBOSE = "BEEXBENCH_KERNELS_VERBOSE"
ENGINE = "BEEXBENCH_ENGINE"
ALLOW_FALLBACK = "BEEXBENCH_ALLOW_FALLBACK"
CPU_TDP_W = "BEEXBENCH_CPU_TDP_W"
NODE_NAME = "BEEXBENCH_NODE_NAME"
ISOLATED = "BEEXBENCH_ISOLATED"

DEFAULT_BUILD_TIMEOUT = 600.0
KERNEL_FALLBACK_NAMES = ("fallback", "torch-fallback", "torch")
KERNEL_NATIVE_NAMES = ("avx512-vpopcnt", "avx2", "avx512-vnni", "portable")  # kernels._backend.NATIVE_BACKENDS
ENGINE_CHOICES = ("auto", "steps", "python")
MAX_TDP_W = 10_000.0
MAX_NODE_NAME = 100
TEST_SUITE_ONLY = ("BEEXBENCH_NETWORK_TESTS", "BEEXBENCH_TEST_BUILD_CACHE")  # read by tests/, not by beexbench
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


class SettingError(BeexError):
    """A ``BEEXBENCH_*`` environment variable holds a value beexbench cannot use."""


def _bad(name: str, raw: str, what: str) -> SettingError:
    shown = raw if len(raw) <= 200 else raw[:200] + "..."
    return SettingError(f"environment variable {name}={shown!r} {what}: fix or unset it")


def _bool(name: str, raw: str) -> bool:
    low = raw.lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise _bad(name, raw, "is not a boolean (use 1 or 0)")


def _seconds(name: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise _bad(name, raw, "is not a number of seconds (e.g. 600)") from None
    if not math.isfinite(value) or value < 0:
        raise _bad(name, raw, "must be a finite number of seconds >= 0 (e.g. 600)")
    return value


def _watts(name: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise _bad(name, raw, "is not a number of watts") from None
    if not math.isfinite(value) or not 0 < value <= MAX_TDP_W:
        raise _bad(name, raw, f"must be a number of watts above 0 and at most {MAX_TDP_W:g}")
    return value


def _kernels(name: str, raw: str) -> str:
    low = raw.lower()
    if low == "auto" or low in KERNEL_NATIVE_NAMES:
        return low
    if low in KERNEL_FALLBACK_NAMES:
        return "fallback"
    raise _bad(name, raw, "is not a kernel backend (use one of: auto, fallback, " + ", ".join(KERNEL_NATIVE_NAMES) + ")")


def _engine(name: str, raw: str) -> str:
    low = raw.lower()
    if low not in ENGINE_CHOICES:
        raise _bad(name, raw, "is not an engine path (use one of: " + ", ".join(ENGINE_CHOICES) + ")")
    return low


def _folder(name: str, raw: str) -> Path:
    path = Path(raw).expanduser()
    if path.exists() and not path.is_dir():
        raise _bad(name, raw, "names something that is not a folder")
    return path


def _node_name(name: str, raw: str) -> str:
    if len(raw) > MAX_NODE_NAME or not raw.isprintable():
        raise _bad(name, raw, f"must be printable text of at most {MAX_NODE_NAME} characters")
    return raw


def _isolated(name: str, raw: str) -> bool:
    if raw not in ("0", "1"):
        raise _bad(name, raw, "must be 0 or 1 (beexbench sets it in its measuring processes)")
    return raw == "1"


# name -> (parser of a non-empty value, the value when unset or empty)
PARSERS: dict[str, tuple[Callable[[str, str], object], object]] = {
    CACHE: (_folder, None),
    BUILD_TIMEOUT: (_seconds, DEFAULT_BUILD_TIMEOUT),
    KERNELS: (_kernels, "auto"),
    KERNELS_VERBOSE: (_bool, False),
    ENGINE: (_engine, "auto"),
    ALLOW_FALLBACK: (_bool, False),
    CPU_TDP_W: (_watts, None),
    NODE_NAME: (_node_name, None),
    ISOLATED: (_isolated, False),
}


_LAST: dict[str, tuple[str, object]] = {}  # name -> (the raw value last parsed, its value)


def get(name: str, env: Mapping[str, str] | None = None):
    """The parsed value of setting ``name`` (its default when unset or empty); raises
    :class:`SettingError` for a value its parser refuses."""
    raw = (os.environ if env is None else env).get(name, "")
    known = _LAST.get(name)
    if env is None and known is not None and known[0] == raw:  # read on every inference call: parse once per value
        return known[1]
    parser, default = PARSERS[name]
    text = raw if name in (CACHE, NODE_NAME) else raw.strip()
    value = default if text == "" else parser(name, text)
    if env is None and name != CACHE:  # the cache folder's check looks at the disk: every time
        _LAST[name] = (raw, value)
    return value


def problems(env: Mapping[str, str] | None = None) -> list[str]:
    """One line per ``BEEXBENCH_*`` setting whose value is refused (none: ``[]``)."""
    out = []
    for name in PARSERS:
        try:
            get(name, env)
        except SettingError as exc:
            out.append(str(exc))
    return out


# -- typed getters ------------------------------------------------------------------------------
def cache_dir() -> Path | None:
    return get(CACHE)


def cache_root() -> Path:
    """beexbench's cache folder: ``$BEEXBENCH_CACHE``, else ``$XDG_CACHE_HOME/beexbench``, else
    ``~/.cache/beexbench`` (data, models, wheels and native builds live below it)."""
    chosen = cache_dir()
    if chosen is not None:
        return chosen
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "beexbench"


def build_timeout() -> float:
    return get(BUILD_TIMEOUT)


def kernels_choice() -> str:
    """auto | fallback | a native backend's name."""
    return get(KERNELS)


def kernels_verbose() -> bool:
    return get(KERNELS_VERBOSE)


def engine_choice() -> str:
    """auto | steps | python."""
    return get(ENGINE)


def allow_fallback() -> bool:
    return get(ALLOW_FALLBACK)


def cpu_tdp_watts(env: Mapping[str, str] | None = None) -> float | None:
    return get(CPU_TDP_W, env)


def node_name() -> str | None:
    return get(NODE_NAME)


def isolated() -> bool:
    return get(ISOLATED)
