"""Typed cost sections of a result record: ``metrics.ops`` (:class:`Ops`), ``metrics.size``
(:class:`Size`), ``metrics.batch1`` and the sweeps (:class:`Latency`), ``metrics.memory``
(:class:`Memory`) and ``metrics.energy`` (:class:`Energy`). These are the profilers' own
records (``beexbench.profilers`` returns them; one type from measurement to file): a field
with a :func:`~beexbench.results.codec.written` default is filled by the profiler when it does
not say, and is still required in a file. A key a profiler adds later is kept in ``extra``.
Keys and units: docs/RESULTS.md."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Literal, Mapping

from .codec import (Context, FrozenMap, Section, absent_if_none, construct, decode, legacy, pointer, with_extra,
                    written)

# beexbench.profilers.energy.PROVENANCES (a test keeps the two equal; results never import torch)
ENERGY_PROVENANCES = ("measured:rapl", "measured:nvml", "estimated:tdp-share", "unavailable")
SIZE_UNITS = {"bits": "bit", "total_bits": "bit", "total_bytes": "byte", "disk_bytes": "byte",
              "tokenizer_bytes": "byte", "total_bits_with_tokenizer": "bit", "deployable_bytes": "byte"}
WIDE_CI_PCT = 5.0  # warn when the 95% CI half-width of the median exceeds this share of the median
TINY_CALL_MS = 0.01  # below ~10 us per call the timer's own overhead matters


@dataclass(frozen=True, kw_only=True)
class OpsMean(Section):
    """Mean operations per test sample: MACs by precision bucket (``macs_<bucket>`` in the
    file), FLOPs, BOPs (binary x binary MACs), OPs and element-wise FLOPs."""

    flops: float
    bops: float
    ops: float
    elementwise_flops: float
    macs: Mapping[str, float]  # bucket (fp32, w1a32, binary, int8, ...) -> MACs

    _COUNTS = ("flops", "bops", "ops", "elementwise_flops")

    @property
    def non_binary_macs(self) -> float:
        """MACs that are not binary x binary (fp32, w1a32, int8, ...): binary ones are BOPs."""
        return sum(v for bucket, v in self.macs.items() if bucket != "binary")

    @classmethod
    def _decode(cls, doc: dict, ptr: str, ctx: Context) -> "OpsMean":
        kwargs: dict[str, Any] = {}
        for key in cls._COUNTS:
            if key not in doc:
                raise ctx.fail(pointer(ptr, key), "is missing")
            kwargs[key] = decode(float, doc[key], pointer(ptr, key), ctx)
        kwargs["macs"] = {k[5:]: decode(float, v, pointer(ptr, k), ctx) for k, v in doc.items() if k.startswith("macs_")}
        rest = {k: v for k, v in doc.items() if k not in cls._COUNTS and not k.startswith("macs_")}
        return construct(cls, {**kwargs, "extra": rest}, ptr, ctx, order=doc)

    def _encode(self) -> dict[str, Any]:
        out: dict[str, Any] = {k: getattr(self, k) for k in self._COUNTS}
        out.update({f"macs_{bucket}": v for bucket, v in self.macs.items()})
        return with_extra(out, self.extra)


@dataclass(frozen=True, kw_only=True)
class Ops(Section):
    """Operation counts: per test sample as run (exits taken) and with every block run."""

    per_sample_mean: OpsMean
    per_sample_mean_all_blocks: OpsMean
    macs_reduction_from_exits: float
    per_depth_at_mean_length: tuple[Mapping[str, Any], ...]  # the counter's record at each exit (detail)
    convention: str
    counter: str
    uncounted: Mapping[str, int]  # op or module the counter could not see -> occurrences


@dataclass(frozen=True, kw_only=True)
class Size(Section):
    """Bits by component, totals with and without the embedding table, and the deployable
    artifact's size on disk (``beexbench.profilers.size.measure_size`` returns it). Labelled
    totals: *encoder only* = ``total_bits_without_embeddings`` (no token table, no tokenizer);
    *whole artifact incl. tokenizer* = ``deployable_bytes`` (model files + tokenizer files on disk)
    and ``total_bits_with_tokenizer`` (declared bits + 8 per tokenizer byte). The tokenizer
    fields are None when the model's task names no tokenizer, and in records written before
    they existed."""

    params: int  # parameter (and declared buffer) elements
    bits: Mapping[str, int]
    total_bits: int
    total_bits_without_embeddings: int
    total_bytes: float
    disk_bytes: int | None
    disk_files: tuple[str, ...] = written(())
    notes: tuple[str, ...] = written(())
    units: Mapping[str, str] = written(default_factory=lambda: FrozenMap(SIZE_UNITS))
    # the tokenizer/vocabulary file(s) the task's tokenizer is loaded from (issue 28); absent (None)
    # where it was not counted: a model whose task names no tokenizer, a record written before
    tokenizer_bytes: int | None = absent_if_none()
    tokenizer_files: tuple[str, ...] | None = absent_if_none()
    total_bits_with_tokenizer: int | None = absent_if_none()
    deployable_bytes: int | None = absent_if_none()  # whole artifact incl. tokenizer, on disk


@dataclass(frozen=True, kw_only=True)
class Latency(Section):
    """Per-call latencies (ms) and their summary (``beexbench.profilers.latency.measure_latency``
    returns it, built with :meth:`from_values`)."""

    values: tuple[float, ...]
    n: int
    median: float
    p90: float
    p99: float
    iqr: float
    mean: float
    std: float
    min: float
    max: float
    ci95_median: tuple[float, float]  # percentile bootstrap, 2000 resamples, seed 0
    ci_halfwidth_pct: float  # (hi - lo) / 2 / median * 100
    timer: str  # "perf_counter_ns" | "cuda_event"
    target: str = written("cpu")
    emulated: bool = written(False)
    threads: int | None = written(None)
    warmup: int = written(0)
    batch_size: int | None = written(None)
    seq_len: int | None = written(None)
    n_inputs: int | None = written(None)  # values[i] belongs to inputs[i % n_inputs] when inputs were given
    elapsed_s: float | None = written(None)  # wall time of the timed loop
    stop_reason: str = written("")  # "min_iters_and_min_seconds" | "max_seconds"
    warnings: tuple[str, ...] = written(())
    unit: str = written("ms")
    wait_policy: str | None = legacy(None, since=3)  # OMP_WAIT_POLICY of the measuring process
    isolated: bool = legacy(False, since=3)  # measured in a fresh process set up for it

    @classmethod
    def from_values(cls, values: Iterable[float], *, timer: str, warnings: Iterable[str] = (),
                    wide_ci_pct: float = WIDE_CI_PCT, **meta: Any) -> "Latency":
        """Summarise raw millisecond values; adds the noise warnings the numbers call for."""
        from ..profilers._stats import bootstrap_median_ci, summarize  # numpy: only where values are summarised

        vals = tuple(float(v) for v in values)
        stats = summarize(vals)
        lo, hi = bootstrap_median_ci(vals)
        half_pct = (hi - lo) / 2 / stats["median"] * 100 if stats["median"] > 0 else float("inf")
        notes = list(warnings)
        if half_pct > wide_ci_pct:
            notes.append(f"wide CI: ±{half_pct:.1f}% of median; the machine may be noisy")
        if len(vals) < 10:
            notes.append(f"only {len(vals)} timed iterations; percentiles are rough")
        if stats["median"] < TINY_CALL_MS:
            notes.append(f"calls take ~{stats['median'] * 1e3:.1f} us; timer overhead is significant, "
                         "time a larger batch of work per call")
        return cls(values=vals, n=len(vals), **stats, ci95_median=(lo, hi), ci_halfwidth_pct=half_pct,
                   timer=timer, warnings=tuple(notes), **meta)


@dataclass(frozen=True, kw_only=True)
class Memory(Section):
    """Peak memory (bytes) around the batch-1 loop (``beexbench.profilers.memory.track_memory``);
    ``peak_rss_delta_bytes`` is what the work added; the device figures are None on targets
    without device memory."""

    peak_rss_bytes: int
    baseline_rss_bytes: int
    peak_rss_delta_bytes: int
    device_peak_allocated_bytes: int | None
    device_baseline_allocated_bytes: int | None
    device_peak_reserved_bytes: int | None
    method: str  # how the figures were obtained
    samples: int  # RSS samples taken
    target: str = written("cpu")
    warnings: tuple[str, ...] = written(())
    unit: str = written("bytes")


@dataclass(frozen=True, kw_only=True)
class Energy(Section):
    """Energy of the batch-1 loop (``beexbench.profilers.energy.track_energy``). ``joules`` (and
    so ``joules_per_sample``) is None only when ``provenance`` is ``"unavailable"``; ``inputs``
    then says why."""

    joules: float | None  # net of idle when measured
    joules_per_sample: float | None
    idle_watts: float | None  # measured before the work; None for estimates
    provenance: Literal[ENERGY_PROVENANCES]
    inputs: Mapping[str, Any] = written(default_factory=FrozenMap)  # what the figure was computed from
    domains: Mapping[str, float] = written(default_factory=FrozenMap)  # raw joules per counter domain
    warnings: tuple[str, ...] = written(())
    joules_raw: float | None = written(None)  # counter delta over the work, before idle subtraction
    duration_s: float | None = written(None)
    n_samples: int | None = written(None)
    target: str = written("cpu")
    unit: str = written("J")

    def __post_init__(self) -> None:
        if self.provenance not in ENERGY_PROVENANCES:
            raise ValueError(f"unknown energy provenance {self.provenance!r}")
        if self.joules is None and self.provenance != "unavailable":
            raise ValueError(f"energy of provenance {self.provenance!r} needs joules")
        object.__setattr__(self, "inputs", FrozenMap(self.inputs))
        object.__setattr__(self, "domains", FrozenMap(self.domains))
        object.__setattr__(self, "warnings", tuple(self.warnings))
