"""Typed cost sections of a result record: ``metrics.ops`` (:class:`Ops`), ``metrics.size``
(:class:`Size`), ``metrics.batch1`` and the sweeps (:class:`Latency`), ``metrics.memory``
(:class:`Memory`) and ``metrics.energy`` (:class:`Energy`). Their fields are the profilers'
records (``beexbench.profilers``) as written; a key a profiler adds later is kept in ``extra``.
Keys and units: docs/RESULTS.md."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Mapping

from .codec import Context, Section, construct, decode, legacy, pointer, with_extra

# beexbench.profilers.energy.PROVENANCES (a test keeps the two equal; results never import torch)
ENERGY_PROVENANCES = ("measured:rapl", "measured:nvml", "estimated:tdp-share", "unavailable")


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
    artifact's size on disk."""

    params: int
    bits: Mapping[str, int]
    total_bits: int
    total_bits_without_embeddings: int
    total_bytes: float
    disk_bytes: int | None
    disk_files: tuple[str, ...]
    notes: tuple[str, ...]
    units: Mapping[str, str]


@dataclass(frozen=True, kw_only=True)
class Latency(Section):
    """Per-call latencies (ms) and their summary: ``beexbench.profilers.latency.LatencyRecord``."""

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
    ci95_median: tuple[float, float]  # bootstrap
    ci_halfwidth_pct: float
    timer: str
    target: str
    emulated: bool
    threads: int | None
    warmup: int
    batch_size: int | None
    seq_len: int | None
    n_inputs: int | None
    elapsed_s: float | None
    stop_reason: str
    warnings: tuple[str, ...]
    unit: str
    wait_policy: str | None = legacy(None, since=3)  # OMP_WAIT_POLICY of the measuring process
    isolated: bool = legacy(False, since=3)  # measured in a fresh process set up for it


@dataclass(frozen=True, kw_only=True)
class Memory(Section):
    """Peak memory (bytes) around the batch-1 loop: ``beexbench.profilers.memory.MemoryRecord``;
    the device figures are None on targets without device memory."""

    peak_rss_bytes: int
    baseline_rss_bytes: int
    peak_rss_delta_bytes: int
    device_peak_allocated_bytes: int | None
    device_baseline_allocated_bytes: int | None
    device_peak_reserved_bytes: int | None
    method: str
    samples: int
    target: str
    warnings: tuple[str, ...]
    unit: str


@dataclass(frozen=True, kw_only=True)
class Energy(Section):
    """Energy of the batch-1 loop: ``beexbench.profilers.energy.EnergyRecord``. ``joules`` (and
    so ``joules_per_sample``) is None only when ``provenance`` is ``"unavailable"``; ``inputs``
    then says why."""

    joules: float | None
    joules_per_sample: float | None
    idle_watts: float | None
    provenance: Literal[ENERGY_PROVENANCES]
    inputs: Mapping[str, Any]
    domains: Mapping[str, float]
    warnings: tuple[str, ...]
    joules_raw: float | None
    duration_s: float | None
    n_samples: int | None
    target: str
    unit: str

    def __post_init__(self) -> None:
        if self.joules is None and self.provenance != "unavailable":
            raise ValueError(f"energy of provenance {self.provenance!r} needs joules")

