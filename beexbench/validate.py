"""One validation pass over a resolved run configuration, before any data is loaded or any
model is built or trained: :func:`validate` returns every problem at once, one line each, and
:func:`check` raises them together as a :class:`~beexbench.errors.ConfigError`.

What each part may hold is asked of the part that knows it: model names of the model
registry, each model's settings of the model itself (:meth:`ModelAdapter.config_problems`: for
the models whose settings are a :class:`~beexbench.adapters.spec.ModelSpec`, the spec's own
validation), task names of the task catalog, target names of the target registry, the model
store of the store. What this pass finds are user errors (nothing runs); what goes wrong later,
inside one cell, fails that cell only.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Iterable

from .config import LatencySettings, RunConfig
from .errors import BeexError, ConfigError

# ``--force-threads`` lets ``threads`` exceed the usable cores, up to this (OpenMP crashes
# far beyond it: ``--threads 100000`` was a segfault)
MAX_FORCED_THREADS = 1024
PROBLEMS = ("classification", "regression")


def check(cfg: RunConfig) -> None:
    """Raise a :class:`ConfigError` listing every problem of ``cfg``; return when there is none."""
    problems = validate(cfg)
    if problems:
        raise ConfigError(problems)


def validate(cfg: RunConfig) -> list[str]:
    """Every problem of ``cfg``, one line each ([] when it can run)."""
    problems = _run_problems(cfg) + _thread_problems(cfg) + latency_problems(cfg.latency) + _target_problems(cfg) \
        + _store_problems(cfg)
    kinds: set[str] = set()
    for task in cfg.tasks:
        found, kind = task_problems(task)
        problems += found
        kinds |= {kind} if kind else set()
    return problems + _model_problems(cfg, kinds or {"classification"})


# -- value checks shared by every part --------------------------------------------------
def bounded(where: str, value: Any, low: float | None = None, high: float | None = None, *, above: bool = False,
            below: bool = False, integer: bool = False, optional: bool = False) -> list[str]:
    """[] when ``value`` is a finite number (an integer when ``integer``) with ``low <= value``
    (``<`` when ``above``) and ``value <= high`` (``<`` when ``below``); else one problem line."""
    if value is None and optional:
        return []
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    ok = number and math.isfinite(value) and (isinstance(value, int) or not integer)
    ok = ok and (low is None or (value > low if above else value >= low))
    ok = ok and (high is None or (value < high if below else value <= high))
    if ok:
        return []
    limits = ([f"{'>' if above else '>='} {low}"] if low is not None else []) + \
             ([f"{'<' if below else '<='} {high}"] if high is not None else [])
    kind = "an integer" if integer else "a finite number"
    return [f"'{where}' must be {' '.join([kind, ' and '.join(limits)]).strip()}, got {value!r}"]


def one_of(where: str, value: Any, allowed: Iterable[str]) -> list[str]:
    """[] when ``value`` is one of ``allowed``; else one problem line naming them."""
    allowed = tuple(allowed)
    return [] if value in allowed else [f"'{where}' is {value!r}: use one of {', '.join(allowed)}"]


# -- the parts of a run ----------------------------------------------------------------
def _duplicates(where: str, values: list) -> list[str]:
    seen = [v for i, v in enumerate(values) if v in values[:i]]
    return [f"'{where}' lists {v!r} more than once: give each once" for v in dict.fromkeys(seen)]


def _run_problems(cfg: RunConfig) -> list[str]:
    out = [] if cfg.models and cfg.tasks and cfg.seeds else [
        "nothing to run: give at least one model, one task and one seed"]
    out += _duplicates("models", cfg.models) + _duplicates("tasks", cfg.tasks) + _duplicates("seeds", cfg.seeds)
    return out + bounded("limit", cfg.limit, 1, integer=True, optional=True) + _run_id_problems(cfg)


def _run_id_problems(cfg: RunConfig) -> list[str]:
    """A run id must name one folder inside the results folder."""
    from ._io import safe_child

    if cfg.run_id is None:
        return []
    try:
        safe_child(cfg.results_dir, cfg.run_id, what="run id")
    except BeexError as exc:
        return [str(exc)]
    return []


def usable_cores() -> int:
    """The cores this process may run on (its affinity mask), not the machine's count."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS, Windows
        return os.cpu_count() or 1


def _thread_problems(cfg: RunConfig) -> list[str]:
    if cfg.threads is None:
        return []
    if cfg.force_threads:
        return bounded("threads", cfg.threads, 1, MAX_FORCED_THREADS, integer=True)
    cores = usable_cores()
    if bounded("threads", cfg.threads, 1, cores, integer=True):
        return [f"'threads' is {cfg.threads}, but this process may use {cores} core(s): give 1 to {cores}, "
                f"or add --force-threads (force_threads = true) to oversubscribe, up to {MAX_FORCED_THREADS}"]
    return []


def latency_problems(lat: LatencySettings) -> list[str]:
    w = "latency."
    seconds = bounded(w + "min_seconds", lat.min_seconds, 0) + bounded(w + "max_seconds", lat.max_seconds, 0, above=True)
    if not seconds and lat.max_seconds < lat.min_seconds:
        seconds = [f"'{w}max_seconds' ({lat.max_seconds}) must be >= '{w}min_seconds' ({lat.min_seconds})"]
    out = bounded(w + "warmup", lat.warmup, 0, integer=True) + bounded(w + "min_iters", lat.min_iters, 1, integer=True)
    out += seconds + bounded(w + "samples", lat.samples, 1, integer=True)
    out += [p for bs in lat.batch_sizes for p in bounded(w + "batch_sizes (--batch-sizes)", bs, 1, integer=True)]
    return out + [p for n in lat.seq_lens for p in bounded(w + "seq_lens", n, 1, integer=True)]


def _target_problems(cfg: RunConfig) -> list[str]:
    from .targets import get_target

    try:
        get_target(cfg.target)
    except BeexError as exc:
        return [str(exc)]
    return []


def _store_problems(cfg: RunConfig) -> list[str]:
    """The model store must be one this beexbench reads (``--models-from``: must be a store)."""
    from .runner.models import model_store

    try:
        model_store(cfg)
    except BeexError as exc:
        return [str(exc)]
    return []


def task_problems(name: str) -> tuple[list[str], str | None]:
    """(problems of the task ``name``, its kind: classification, regression, or None when unknown).
    A catalog name is looked up; a dataset spec is parsed and its file checked, not read."""
    from .data.local import is_dataset_spec
    from .data.tasks import get_spec

    if is_dataset_spec(name):
        return _dataset_spec_problems(name)
    try:
        return [], get_spec(name).problem
    except BeexError as exc:
        return [str(exc)], None


def _dataset_spec_problems(name: str) -> tuple[list[str], str | None]:
    from .data.local import _HF_KEYS, _LOCAL_KEYS, parse_dataset_spec

    try:
        kind, target, opts = parse_dataset_spec(name)
    except BeexError as exc:
        return [str(exc)], None
    allowed = _HF_KEYS if kind == "hf" else _LOCAL_KEYS
    out = [f"unknown option {k!r} in dataset {name!r}: allowed: {', '.join(sorted(allowed))}" for k in sorted(set(opts) - allowed)]
    for key in ("vocab_size", "max_len_cap"):
        if key in opts and not opts[key].isdigit():
            out.append(f"{key} in dataset {name!r} must be a positive integer, got {opts[key]!r}")
    problem = opts.get("problem") or ("classification" if kind != "hf" else None)  # hf: known GLUE configs decide
    out += one_of(f"problem' in dataset '{name}", problem, PROBLEMS) if problem else []
    if kind != "hf" and not Path(target).is_file():
        out.append(f"dataset file {target} not found (in {name!r}): check the path")
    return out, None if out else problem


def _model_problems(cfg: RunConfig, kinds: set[str]) -> list[str]:
    """Each planned model's settings, checked by the model for every kind of task it will
    run; a problem shared by several models (a suite-wide setting) is one line naming them.
    ``model_overrides`` may name models this run does not plan (a suite run with fewer
    ``--models``): only their names are checked."""
    from .adapters.registry import get_adapter_class
    from .runner.models import overrides_for

    planned = [m for m, _ in cfg.planned_models()]
    found: dict[str, list[str]] = {}
    for name in dict.fromkeys(planned + list(cfg.model_overrides)):
        try:
            cls = get_adapter_class(name)
        except BeexError as exc:
            found.setdefault(str(exc), [])
            continue
        if name in planned:
            overrides = overrides_for(name, cfg, cfg.seeds[0] if cfg.seeds else 0)
            for kind in sorted(k for k in kinds if not cls.problem_refusal(k)):
                for problem in cls.config_problems(overrides, kind):
                    found.setdefault(problem, []).append(name)
    return [f"{p} ({_models(names)})" if names else p for p, names in found.items()]


def _models(names: list[str]) -> str:
    names = list(dict.fromkeys(names))
    return f"model{'s' if len(names) > 1 else ''} {', '.join(names)}"
