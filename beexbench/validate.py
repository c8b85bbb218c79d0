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

import os
import unicodedata
from pathlib import Path
from typing import Any, Iterable

from . import settings  # the BEEXBENCH_* environment settings, one parser each
from ._checks import bounded  # noqa: F401 (re-exported: the value check lives below spec and validate)
from .config import LatencySettings, RunConfig
from .errors import BeexError, ConfigError

# ``--force-threads`` lets ``threads`` exceed the usable cores, up to this (OpenMP crashes
# far beyond it: ``--threads 100000`` was a segfault)
MAX_FORCED_THREADS = 1024
PROBLEMS = ("classification", "regression")
# seeds are what numpy's legacy seeding and scikit-learn's random_state take (torch takes more)
SEED_LIMIT = 2**32


def check(cfg: RunConfig) -> None:
    """Raise a :class:`ConfigError` listing every problem of ``cfg``; return when there is none."""
    problems = validate(cfg)
    if problems:
        raise ConfigError(problems)


def validate(cfg: RunConfig) -> list[str]:
    """Every problem of ``cfg``, one line each ([] when it can run)."""
    problems = settings.problems() + _run_problems(cfg) + _thread_problems(cfg) + latency_problems(cfg.latency) \
        + _target_problems(cfg) + _store_problems(cfg)
    kinds: set[str] = set()
    for task in cfg.tasks:
        found, kind = task_problems(task)
        problems += found
        kinds |= {kind} if kind else set()
    return problems + _model_problems(cfg, kinds or {"classification"})


# -- value checks shared by every part --------------------------------------------------
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
    out += [f"'seeds' (--seeds) must be integers from 0 to {SEED_LIMIT - 1} (what numpy and scikit-learn seed with), "
            f"got {s!r}" for s in dict.fromkeys(cfg.seeds) if bounded("seeds", s, 0, SEED_LIMIT, integer=True, below=True)]
    return out + _limit_problems(cfg.limit) + _run_id_problems(cfg) + _folder_problems(cfg)


def _limit_problems(limit: Any) -> list[str]:
    """``limit`` is examples per split: the dataset rules (at least MIN_ROWS rows over train, val
    and test) hold for what is used, so a limit that cannot give that many is refused here."""
    from .data.assemble import MIN_LIMIT, MIN_ROWS

    if not bounded("limit", limit, MIN_LIMIT, integer=True, optional=True):
        return []
    return [f"'limit' (--limit) is {limit!r}: it is examples per split, and a task needs at least {MIN_ROWS} rows over "
            f"its train, val and test splits: give at least {MIN_LIMIT}, or no limit"]


def _run_id_problems(cfg: RunConfig) -> list[str]:
    """A run id must name one folder inside the results folder, in characters a terminal shows
    as they are (no control characters, no bidirectional overrides or other invisible ones)."""
    from ._io import safe_child

    if cfg.run_id is None:
        return []
    hidden = [c for c in cfg.run_id if not c.isprintable() or unicodedata.category(c) in ("Cc", "Cf")]
    if hidden:
        return [f"run id {cfg.run_id!r} holds a control or invisible character ({ascii(hidden[0])}): use printable "
                "characters only"]
    try:
        safe_child(cfg.results_dir, cfg.run_id, what="run id")
    except BeexError as exc:
        return [str(exc)]
    return []


def _folder_problems(cfg: RunConfig) -> list[str]:
    """The results folder (and the model store when given) must be a folder or not exist yet,
    inside folders: a regular file there would fail the run at its first write."""
    out = []
    for key, flag, value in (("results_dir", "--results", cfg.results_dir), ("models_dir", "--models-dir", cfg.models_dir)):
        if value is None:
            continue
        path = Path(value)
        blocking = next((p for p in (path, *path.parents) if p.exists() or p.is_symlink()), None)
        if blocking is not None and not blocking.is_dir():
            what = "is" if blocking == path else f"is inside {blocking}, which is"
            out.append(f"'{key}' ({flag}) {value} {what} not a folder: name a folder (it is made when missing)")
    return out


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
    out += [p for n in lat.seq_lens for p in bounded(w + "seq_lens", n, 1, integer=True)]
    return out + scenario_problems(lat)


def scenario_problems(lat: LatencySettings) -> list[str]:
    """The deployment scenarios' settings (issue 31, beexbench.runner.scenarios)."""
    from .results.scenarios import SCENARIOS

    w = "latency."
    out = [f"unknown scenario '{s}' in '{w}scenarios' (--scenarios): known are {', '.join(SCENARIOS)}"
           for s in lat.scenarios if s not in SCENARIOS]
    out += [f"'{w}scenarios' names '{s}' twice" for s in sorted(set(lat.scenarios)) if lat.scenarios.count(s) > 1]
    out += bounded(w + "scenario_min_seconds", lat.scenario_min_seconds, 0, 3600)
    out += bounded(w + "scenario_max_seconds", lat.scenario_max_seconds, 0, 7200, above=True)
    out += bounded(w + "scenario_min_queries", lat.scenario_min_queries, 1, 10_000_000, integer=True)
    out += bounded(w + "server_min_queries", lat.server_min_queries, 1, 10_000_000, integer=True)
    out += [p for b in lat.offline_batch_sizes for p in bounded(w + "offline_batch_sizes", b, 1, 4096, integer=True)]
    if not lat.offline_batch_sizes:
        out.append(f"'{w}offline_batch_sizes' is empty: give at least one batch size")
    out += bounded(w + "server_bound_ms", lat.server_bound_ms, 0, 3_600_000, above=True, optional=True)
    out += bounded(w + "server_bound_p90_multiple", lat.server_bound_p90_multiple, 1, 1000)
    out += bounded(w + "server_max_batch", lat.server_max_batch, 1, 4096, integer=True)
    out += bounded(w + "server_wait_ms", lat.server_wait_ms, 0, 60_000)
    return out + bounded(w + "server_probes", lat.server_probes, 0, 30, integer=True)


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
    from .data.local import parse_dataset_spec
    from .data.options import option_problems

    try:
        kind, target, opts = parse_dataset_spec(name)
    except BeexError as exc:
        return [str(exc)], None
    out = option_problems(name, kind, opts)  # every option's name and range, as the loader checks them
    problem = opts.get("problem") or ("classification" if kind != "hf" else None)  # hf: known GLUE configs decide
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
        missing = cls.unavailable() if name in planned else None
        if missing:
            found.setdefault(missing, []).append(name)
        elif name in planned:
            overrides = overrides_for(name, cfg, cfg.seeds[0] if cfg.seeds else 0)
            for kind in sorted(k for k in kinds if not cls.problem_refusal(k)):
                for problem in cls.config_problems(overrides, kind):
                    found.setdefault(problem, []).append(name)
    return [f"{p} ({_models(names)})" if names else p for p, names in found.items()]


def _models(names: list[str]) -> str:
    names = list(dict.fromkeys(names))
    return f"model{'s' if len(names) > 1 else ''} {', '.join(names)}"
