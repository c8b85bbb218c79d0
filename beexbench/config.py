"""Run configuration: plain dataclasses with one parse path shared by suite files
(TOML) and CLI flags. An unknown key or a wrong type is an error naming the key."""
from __future__ import annotations

import dataclasses
import os
import stat
import sys
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from .errors import BeexError, UnknownNameError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


@dataclass
class LatencySettings:
    warmup: int = 10
    min_iters: int = 50
    min_seconds: float = 2.0
    max_seconds: float = 30.0
    batch_sizes: list[int] = field(default_factory=lambda: [1, 8])
    samples: int = 256  # test samples cycled through at batch size 1 (real inputs, real exits)
    seq_lens: list[int] = field(default_factory=list)  # batch-1 sweep over exact lengths (<= the task's max_len)
    # each thread setting measured in a fresh process whose threads and OpenMP wait policy are set
    # before torch loads (beexbench.runner.isolate); false: in the run's own process (faster, for tests)
    isolate: bool = True
    # deployment scenarios (issue 31, beexbench.runner.scenarios): "single-stream", "offline", "server";
    # short by default, far below MLPerf's official minimums (the record says so)
    scenarios: list[str] = field(default_factory=list)
    scenario_min_seconds: float = 1.0  # each LoadGen test (each Server probe)
    scenario_max_seconds: float = 10.0  # LoadGen stops here; a run cut short of its minimums is INVALID
    scenario_min_queries: int = 64  # SingleStream queries / Offline samples (LoadGen's p90 early stopping: 64)
    server_min_queries: int = 500  # each Server probe (LoadGen's p99 early stopping needs 459 on time)
    offline_batch_sizes: list[int] = field(default_factory=lambda: [1, 8, 32])  # the Offline search
    server_bound_ms: float | None = None  # the Server p99 bound; None: server_bound_p90_multiple x SingleStream p90, at least 10 ms
    server_bound_p90_multiple: float = 5.0
    server_max_batch: int = 8  # dynamic batching: the largest batch
    server_wait_ms: float = 1.0  # dynamic batching: the wait after a batch's first query
    server_probes: int = 6  # bisection steps after the first probe


SCENARIO_KEYS = ("scenarios", "scenario_min_seconds", "scenario_max_seconds", "scenario_min_queries", "server_min_queries",
                 "offline_batch_sizes", "server_bound_ms", "server_bound_p90_multiple", "server_max_batch", "server_wait_ms",
                 "server_probes")


def asdict_defaults(cls: type, keys: tuple[str, ...]) -> dict[str, Any]:
    default = dataclasses.asdict(cls())
    return {k: default[k] for k in keys}


# Reference floors added to every task of a run unless ``floors = false`` (``--no-floors``).
FLOORS = ("majority", "bow-linear")


@dataclass
class RunConfig:
    suite: str = "default"
    models: list[str] = field(default_factory=lambda: ["beexformer", "fp32"])
    tasks: list[str] = field(default_factory=lambda: ["rotten_tomatoes"])
    target: str = "cpu"
    threads: int | None = None  # 1 .. the usable cores (more only with force_threads)
    force_threads: bool = False  # allow threads beyond the usable cores (oversubscription)
    seeds: list[int] = field(default_factory=lambda: [0])
    limit: int | None = None  # examples per split, for tiny runs
    # a partial ModelSpec (beexbench.adapters.spec) merged over every ModelSpec model's registered
    # spec: the run's explicit choices (sizes, epochs), never a default; checked per model by validate
    model: dict[str, Any] = field(default_factory=dict)
    model_overrides: dict[str, dict[str, Any]] = field(default_factory=dict)  # per model name, over ``model``
    latency: LatencySettings = field(default_factory=LatencySettings)
    energy: bool = True
    floors: bool = True  # add the reference floors (FLOORS) to every task
    results_dir: str = "results"
    models_dir: str | None = None  # checkpoint store (default: $BEEXBENCH_CACHE/models)
    models_from: str | None = None  # a store copied from another machine: measure, never train
    run_id: str | None = None

    def to_dict(self) -> dict:
        """As saved in run.json. ``force_threads`` only when set: runs saved before it existed
        keep their identity (config fingerprint)."""
        doc = dataclasses.asdict(self)
        if not doc["force_threads"]:
            doc.pop("force_threads")
        for key, value in asdict_defaults(LatencySettings, SCENARIO_KEYS).items():  # runs before issue 31 keep theirs
            if doc["latency"].get(key) == value:
                doc["latency"].pop(key)
        return doc

    def planned_models(self) -> list[tuple[str, list[int]]]:
        """(model, seeds) run on every task: the configured models on every seed, then the
        reference floors not already among them, on the first seed only (their fit is
        deterministic: it does not use the seed)."""
        out = [(m, list(self.seeds)) for m in self.models]
        if self.floors:
            out += [(f, list(self.seeds[:1])) for f in FLOORS if f not in self.models]
        return out


_NESTED = {"latency": LatencySettings}
_FREE = {"model", "model_overrides"}  # validated later against each model's own config


def _check_type(where: str, default: Any, value: Any, annotation: str) -> Any:
    if value is None:
        if "None" in annotation:
            return None
        raise BeexError(f"'{where}' must not be empty")
    if isinstance(default, bool) or annotation == "bool":
        ok = isinstance(value, bool)
    elif isinstance(default, float) or annotation.startswith("float"):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif isinstance(default, int) or annotation.startswith("int"):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, list) or annotation.startswith("list"):
        ok = isinstance(value, list)
        inner = "int" if "int" in annotation else "str"
        ok = ok and all(isinstance(v, int) and not isinstance(v, bool) if inner == "int" else isinstance(v, str) for v in value)
    elif isinstance(default, dict) or annotation.startswith("dict"):
        ok = isinstance(value, dict)
    else:
        ok = isinstance(value, str)
    if not ok:
        raise BeexError(f"'{where}' has the wrong type: got {type(value).__name__} ({value!r}), expected {annotation}")
    return value


def _build(cls: type, values: dict[str, Any], where: str, base: Any = None):
    base = base if base is not None else cls()
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {name: getattr(base, name) for name in fields}
    for key, value in values.items():
        if key not in fields:
            raise BeexError(f"unknown config key '{where}{key}': known keys are {', '.join(fields)}")
        if key in _NESTED:
            if not isinstance(value, dict):
                raise BeexError(f"'{where}{key}' must be a table")
            kwargs[key] = _build(_NESTED[key], value, f"{where}{key}.", getattr(base, key))
        else:
            kwargs[key] = _check_type(f"{where}{key}", getattr(cls(), key), value, str(fields[key].type))
    return cls(**kwargs)


def suite_names() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files("beexbench.suites").iterdir() if p.name.endswith(".toml"))


MAX_CONFIG_BYTES = 1 << 20  # a suite file is a few KiB: anything past 1 MiB is not one (read no further)


def read_toml(path: Path) -> dict:
    """The TOML document in ``path``: a regular UTF-8 text file (a byte-order mark is fine) of at
    most :data:`MAX_CONFIG_BYTES`; anything else is one line saying what it is."""
    path = Path(path)
    try:
        # O_NONBLOCK: a FIFO named as the config must not wait for a writer (regular files ignore it)
        with os.fdopen(os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0)), "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise BeexError(f"config file {path} is not a regular file: name a TOML suite file")
            raw = f.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        raise BeexError(f"config file {path} not found") from None
    except IsADirectoryError:
        raise BeexError(f"config file {path} is a folder: name a TOML suite file (e.g. {path}/suite.toml)") from None
    except PermissionError:
        raise BeexError(f"config file {path} cannot be read (permission denied): fix its permissions") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise BeexError(f"config file {path} is larger than {MAX_CONFIG_BYTES >> 20} MiB: it is not a suite file")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise BeexError(f"config file {path} is not UTF-8 text (byte {exc.start}): name a TOML suite file") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise BeexError(f"config file {path} is not valid TOML ({exc})") from None


def suite_path(name: str) -> Path:
    if name not in suite_names():
        import difflib

        close = difflib.get_close_matches(name, suite_names(), n=2)
        raise UnknownNameError(f"unknown suite '{name}': {'did you mean ' + ', '.join(close) + '?' if close else 'known: ' + ', '.join(suite_names())}")
    return Path(str(resources.files("beexbench.suites") / f"{name}.toml"))


def load_config(suite: str | None = None, config_file: Path | None = None, **flags: Any) -> RunConfig:
    """Suite file, then an optional user config file, then CLI flags (None = not given)."""
    cfg = RunConfig()
    if config_file is None:
        doc = read_toml(suite_path(suite or "default"))
        cfg = _build(RunConfig, doc, "", cfg)
    else:
        doc = read_toml(Path(config_file))
        cfg = _build(RunConfig, doc, "", cfg)
    if suite and config_file is None:
        cfg.suite = suite
    return apply_flags(cfg, **flags)


def apply_flags(cfg: RunConfig, **flags: Any) -> RunConfig:
    """``cfg`` with the CLI flags that were given (None = not given); ``cfg`` is unchanged."""
    given = {k: v for k, v in flags.items() if v is not None}
    if "latency_batch_sizes" in given:
        given["latency"] = {**dataclasses.asdict(cfg.latency), "batch_sizes": given.pop("latency_batch_sizes")}
    if "latency_scenarios" in given:  # --scenarios single-stream,offline
        given["latency"] = {**given.get("latency", dataclasses.asdict(cfg.latency)),
                            "scenarios": [s.strip() for s in given.pop("latency_scenarios").split(",") if s.strip()]}
    return _build(RunConfig, given, "", cfg)
