"""The typed ``metrics`` of a result record (:class:`CellMetrics`), one section per kind of
measurement; each section's fields are its schema (:mod:`beexbench.results.codec`). A declared
metric (:mod:`beexbench.results.columns`) adds its own section, ``metrics.<key>``, read as its
declared type."""
from __future__ import annotations

from dataclasses import dataclass

from .codec import Context, Section, absent_if_none, decode, decode_fields, legacy, pointer
from .implementation import Implementation
from .costs import ENERGY_PROVENANCES, Energy, Latency, Memory, Ops, OpsMean, Size
from .quality import METRICS, Accuracy, Calibration, Exits, Metric, Quality, RegressionQuality, SweepRow


@dataclass(frozen=True, kw_only=True)
class CellMetrics(Section):
    """Everything measured for one cell. Optional by design: ``exits`` is None for a model with
    no blocks and no exit rule (the reference floors; the key is there, ``null``), ``energy``
    is None when the run did not measure energy (``energy = false``: the key is left out; an
    energy that was measured but is unavailable is an :class:`Energy` that says why)."""

    accuracy: Quality  # the task's headline quality, exit rule applied
    accuracy_no_exit: Quality  # the final exit, every block run
    ops: Ops
    exits: Exits | None
    size: Size
    batch1: Latency  # batch size 1 on real test samples, at the model's fastest thread setting
    energy: Energy | None = absent_if_none()
    memory: Memory
    batch_sweep: tuple[Latency, ...]
    seq_len_sweep: tuple[Latency, ...] = legacy((), since=2)
    # batch 1 and the batch sweep at every thread setting the target lists (batch1 and
    # batch_sweep are the fastest setting's, chosen by the batch-1 median)
    latency_by_threads: tuple[Latency, ...] = legacy((), since=3)
    # what ran the measured model (beexbench.results.implementation); left out of records written before it
    implementation: Implementation | None = absent_if_none()

    @classmethod
    def _decode(cls, doc: dict, ptr: str, ctx: Context) -> "CellMetrics":
        """By its fields; then each declared metric's section (kept in ``extra``) as its type."""
        from .columns import sections  # the declarations are looked up when a record is read

        obj = decode_fields(cls, doc, ptr, ctx)
        if obj.extra:
            types = sections()
            typed = {k: decode(types[k], v, pointer(ptr, k), ctx) if k in types else v for k, v in obj.extra.items()}
            object.__setattr__(obj, "extra", typed)
        return obj

    def section(self, key: str):
        """A declared metric's section (None: this record has none)."""
        return self.extra.get(key)

    @property
    def metric(self) -> str:
        """The headline metric's name: ``accuracy`` or ``pearson_r``."""
        return self.accuracy.metric


__all__ = ["Accuracy", "Calibration", "CellMetrics", "ENERGY_PROVENANCES", "Energy", "Exits", "Implementation", "Latency", "METRICS",
           "Memory", "Metric", "Ops", "OpsMean", "Quality", "RegressionQuality", "Size", "SweepRow"]
