"""Every metric the report shows, declared once: the frame's column it fills, where in the
record it is read, its unit, how its seeds are combined, how it is shown and which tables and
figures use it. ``report.frame``, ``report.aggregate``, ``report.tables`` and the report's
Pareto figures read these declarations; none of them keeps its own list of columns.

A metric of a plugin (or a new one of the tree) is a :class:`MetricDeclaration`: its typed
section (``metrics.<key>`` in the record, a codec :class:`~beexbench.results.codec.Section`),
its columns, and the function that measures it. It is registered in :data:`DECLARED_METRICS`
(the ``beexbench.metrics`` entry-point group, or :data:`BUILTIN_METRICS` in the tree) and then
appears in the record, the frame, the seed aggregation, the summary table, its CSV and, with a
:class:`Plot`, a Pareto figure. Checklist: docs/ARCHITECTURE.md, "Adding a metric".
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from .._registry import Entry, Registry
from ..errors import BeexError

# how a column's per-seed values become one value (report.aggregate.AGGREGATIONS, or a callable
# ``(values, group) -> value``): "mean" (NaN-skipping), "first", "first_text" (first non-empty),
# "join" (sorted distinct integers, comma-joined), "pooled_by_key" (mean per key of dicts),
# "sum_lists" (element-wise sum of equal-length lists), "list" (every seed's value), "per_seed"
# ((seed, value) for every non-empty value), "merge" (union of dicts), "none" (not aggregated:
# an interval bound filled by the column whose ``interval`` names it, or a per-cell detail)
SEED_AGGREGATIONS = ("mean", "first", "first_text", "join", "pooled_by_key", "sum_lists", "list", "per_seed", "merge",
                     "none")


@dataclass(frozen=True)
class Plot:
    """A Pareto figure of test quality against this column (a cost: lower is better)."""

    label: str  # the x axis
    name: str  # in the figure's title ("quality vs <name>")
    scale: float = 1.0  # to the axis' unit
    log_x: bool = True  # when the values span more than 20x
    err: tuple[str, str] | None = None  # x error-bar columns (lo, hi)


@dataclass(frozen=True)
class Column:
    """One column of the report's frame (one row per cell), declared once."""

    name: str
    read: Callable[[Any], Any]  # the finished cell's CellMetrics (or, with ``section``, that section) -> value
    unit: str = ""
    seeds: str | Callable[[Any, Any], Any] = "mean"  # SEED_AGGREGATIONS, or (values, group) -> value
    empty: Any = None  # a failed cell's value (or a record without the section)
    numeric: bool = True  # a float column in the frame (None, NaN and +-inf: missing)
    spread: str = ""  # the column of its sample std over seeds
    interval: tuple[str, str] | None = None  # (lo, hi): one seed's own interval, several seeds' mean ± std
    count: str = ""  # the column counting the seeds that have a value
    better: str = ""  # "higher" | "lower" | "" (not ranked)
    front: str = ""  # a Pareto-front axis of the summary table (a cost: lower is better)
    plot: Plot | None = None
    header: str = ""  # a summary-table column of its own (the built-ins are laid out by report.tables)
    fmt: str = ""  # format spec of the shown value, after ``scale``
    scale: float = 1.0
    csv: str = ""  # its name in the summary table's CSV (default: ``name``)
    section: str = ""  # a declared metric's key: ``read`` gets that section

    def __post_init__(self) -> None:
        if isinstance(self.seeds, str) and self.seeds not in SEED_AGGREGATIONS:
            raise ValueError(f"column {self.name!r}: seeds is one of {', '.join(SEED_AGGREGATIONS)}, not {self.seeds!r}")
        if self.better not in ("", "higher", "lower"):
            raise ValueError(f"column {self.name!r}: better is 'higher', 'lower' or ''")

    def value(self, metrics: Any) -> Any:
        """This column of one record's typed metrics (None: a failed cell)."""
        if metrics is None:
            return self.empty
        if self.section:
            part = metrics.extra.get(self.section)
            return self.empty if part is None or isinstance(part, dict) else self.read(part)
        return self.read(metrics)


@dataclass(frozen=True)
class MetricDeclaration:
    """A metric outside the built-in sections: its section, its columns and its measurement."""

    key: str  # metrics.<key> in the record
    section: type  # a frozen codec Section (its fields are its schema)
    columns: tuple[Column, ...]
    # (adapter, test split, target) -> an instance of ``section``; run in the run's own process after
    # the quality pass (None: the section is filled by code of the tree)
    measure: Callable[[Any, Any, Any], Any] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "columns", tuple(
            c if c.section else Column(**{**c.__dict__, "section": self.key}) for c in self.columns))


def _check(entry: Entry, obj: Any) -> MetricDeclaration:
    if not isinstance(obj, MetricDeclaration) or obj.key != entry.name:
        raise BeexError(f"metric '{entry.name}' ({entry.origin}) is not a MetricDeclaration with key '{entry.name}'")
    return obj


# key -> "module:attr" of a MetricDeclaration of the tree
BUILTIN_METRICS: dict[str, str] = {"static_depth": "beexbench.results.static_depth:DECLARATION",
                                   "samples": "beexbench.results.samples:DECLARATION",
                                   "scenarios": "beexbench.results.scenarios:DECLARATION"}
DECLARED_METRICS: Registry[MetricDeclaration] = Registry("metric", "beexbench.metrics", BUILTIN_METRICS, check=_check)


def declare_metric(declaration: MetricDeclaration) -> MetricDeclaration:
    """Register a metric from code (a test, a notebook): it is then measured, written and
    reported in this process (a plugin package uses the ``beexbench.metrics`` entry-point group)."""
    return DECLARED_METRICS.register(declaration.key)(declaration)


def declared() -> list[MetricDeclaration]:
    """The declared metrics (built-in table and entry points, loaded on first use), by key."""
    return [DECLARED_METRICS.get(name) for name in DECLARED_METRICS.names()]


def _energy_shown(values, group):
    """The provenance of the energy figure shown: of the seeds that have one (else of all)."""
    measured = group[group["energy_j"].notna()] if group["energy_j"].notna().any() else group
    return " / ".join(sorted(set(measured["energy_provenance"])))


def _cal(m):
    return m.exits.calibration if m.exits is not None else None


def _rss_mib(m):
    rss = m.memory.peak_rss_bytes
    return rss / 2**20 if rss else None


OPS_LABEL = "operations per sample, OPs = FLOPs + BOPs/64 (M)"

# The built-in metrics, in the frame's column order.
BUILTIN_COLUMNS: tuple[Column, ...] = (
    Column("metric", lambda m: m.accuracy.metric, seeds="first", empty="accuracy", numeric=False),
    Column("accuracy", lambda m: m.accuracy.value, unit="fraction", better="higher", spread="accuracy_std",
           interval=("accuracy_lo", "accuracy_hi"), fmt=".1f", scale=100),
    Column("accuracy_lo", lambda m: m.accuracy.ci95[0], unit="fraction", seeds="none"),
    Column("accuracy_hi", lambda m: m.accuracy.ci95[1], unit="fraction", seeds="none"),
    Column("accuracy_n", lambda m: m.accuracy.n, unit="samples", seeds="none"),
    Column("accuracy_undefined", lambda m: m.accuracy.undefined or "", seeds="first_text", empty="", numeric=False),
    Column("accuracy_no_exit", lambda m: m.accuracy_no_exit.value, unit="fraction", better="higher"),
    Column("size_bits", lambda m: m.size.total_bits, unit="bit", better="lower", front="size",
           plot=Plot("model size, total incl. embeddings (KiB)", "size", 1 / 8 / 1024)),
    Column("size_bits_no_emb", lambda m: m.size.total_bits_without_embeddings, unit="bit", better="lower"),
    Column("disk_bytes", lambda m: m.size.disk_bytes, unit="byte", better="lower"),
    # issue 28, size ladder: the tokenizer, and the whole artifact incl. tokenizer (disk, bits)
    Column("tokenizer_bytes", lambda m: m.size.tokenizer_bytes, unit="byte", better="lower"),
    Column("deployable_bytes", lambda m: m.size.deployable_bytes, unit="byte", better="lower"),
    Column("size_bits_with_tokenizer", lambda m: m.size.total_bits_with_tokenizer, unit="bit", better="lower"),
    Column("params", lambda m: m.size.params, unit="elements"),
    # MACs that are not binary (fp32, w1a32, int8); binary x binary MACs are BOPs
    Column("macs", lambda m: m.ops.per_sample_mean.non_binary_macs, unit="MAC", better="lower", fmt=".2f", scale=1e-6),
    Column("bops", lambda m: m.ops.per_sample_mean.bops, unit="BOP", better="lower", fmt=".2f", scale=1e-6),
    Column("flops", lambda m: m.ops.per_sample_mean.flops, unit="FLOP", better="lower"),
    Column("ops", lambda m: m.ops.per_sample_mean.ops, unit="OP", better="lower", front="ops", fmt=".2f", scale=1e-6,
           plot=Plot(OPS_LABEL, "operations", 1e-6)),
    Column("macs_reduction", lambda m: m.ops.macs_reduction_from_exits, unit="fraction", better="higher"),
    Column("uncounted", lambda m: dict(m.ops.uncounted), seeds="merge", empty={}, numeric=False),
    Column("latency_ms", lambda m: m.batch1.median, unit="ms", better="lower", spread="latency_std",
           interval=("latency_lo", "latency_hi"), front="latency",
           plot=Plot("latency at batch size 1, median (ms)", "latency", 1.0, err=("latency_lo", "latency_hi"))),
    Column("latency_p90_ms", lambda m: m.batch1.p90, unit="ms", better="lower"),
    Column("latency_lo", lambda m: m.batch1.ci95_median[0], unit="ms", seeds="none"),
    Column("latency_hi", lambda m: m.batch1.ci95_median[1], unit="ms", seeds="none"),
    Column("latency_ci_pct", lambda m: m.batch1.ci_halfwidth_pct, unit="%"),
    # the fastest thread setting (the headline)
    Column("latency_threads", lambda m: m.batch1.threads, unit="threads", seeds="join", numeric=False),
    # batch-1 median at every thread setting measured (records of schema 3; {} before)
    Column("latency_by_threads", lambda m: {r.threads: r.median for r in m.latency_by_threads if r.batch_size == 1 and r.threads},
           unit="ms", seeds="pooled_by_key", empty={}, numeric=False),
    Column("energy_j", lambda m: m.energy.joules_per_sample if m.energy is not None else None, unit="J", better="lower",
           spread="energy_std", count="energy_n", front="energy", plot=Plot("energy per sample (mJ)", "energy", 1e3)),
    Column("energy_provenance", lambda m: m.energy.provenance if m.energy is not None else "not measured",
           seeds=_energy_shown, empty="not measured", numeric=False),
    Column("peak_rss_mib", _rss_mib, unit="MiB", better="lower"),
    Column("mean_exit", lambda m: m.exits.mean_exit_block if m.exits is not None else None, unit="block", fmt=".2f"),
    Column("n_blocks", lambda m: m.exits.n_blocks if m.exits is not None else None, unit="blocks", fmt=".0f"),
    Column("exit_histogram", lambda m: list(m.exits.histogram) if m.exits is not None else [], unit="samples",
           seeds="sum_lists", empty=[], numeric=False),
    Column("calibration_param", lambda m: _cal(m).param if _cal(m) is not None else "delta", seeds="first", empty="delta",
           numeric=False),
    Column("calibration_chosen", lambda m: _cal(m).chosen if _cal(m) is not None else None, seeds="list", numeric=False),
    # sweep rows as they read in the file (the plots and the CSV export take them so)
    Column("val_sweep", lambda m: [row.to_dict() for row in _cal(m).sweep] if _cal(m) is not None else [],
           seeds="per_seed", empty=[], numeric=False),
    Column("test_sweep", lambda m: [row.to_dict() for row in m.exits.test_sweep] if m.exits is not None and m.exits.test_sweep else [],
           seeds="per_seed", empty=[], numeric=False),
)


def columns() -> tuple[Column, ...]:
    """The built-in columns, then each declared metric's."""
    return BUILTIN_COLUMNS + tuple(c for d in declared() for c in d.columns)


def column(name: str) -> Column:
    for c in columns():
        if c.name == name:
            return c
    raise KeyError(name)


def sections() -> dict[str, type]:
    """metrics.<key> -> its section type, for each declared metric (read by CellMetrics)."""
    return {d.key: d.section for d in declared()}


__all__ = ["BUILTIN_COLUMNS", "BUILTIN_METRICS", "Column", "DECLARED_METRICS", "MetricDeclaration", "Plot",
           "SEED_AGGREGATIONS", "column", "columns", "declare_metric", "declared", "sections"]
