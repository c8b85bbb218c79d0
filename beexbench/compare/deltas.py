"""One metric of one cell, base against new, as a typed delta with its interval and test.

- accuracy: points (new - base). Paired (exact McNemar) when both records keep per-sample outputs
  of the same split (``metrics.samples``, schema 4); otherwise an unpaired two-proportion z-test
  on the two accuracies, labelled so (records written before schema 4).
- latency (batch 1, median): a ratio new / base. Paired bootstrap over inputs when both measured
  the same inputs (equal ``n_inputs`` and split digest): each input's mean over its repeats on
  each side; otherwise an unpaired bootstrap of the two medians, labelled so.
- size (deployable bytes on disk): a ratio, exact (a file size has no sampling error).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..results.schema import CellRecord
from ..stats import mcnemar, paired_ratio, per_input_means, unpaired_proportions, unpaired_ratio

METRICS = ("accuracy", "latency", "size")


@dataclass(frozen=True)
class Delta:
    metric: str  # accuracy | latency | size
    base: float
    new: float
    change: float  # accuracy: new - base (fraction); latency, size: new / base
    lo: float  # interval of ``change`` (95%); equal to change when exact
    hi: float
    p_value: float  # before correction (1.0: no test possible, or exact and equal)
    method: str
    p_adjusted: float = math.nan  # after the family's correction (set by compare)

    @property
    def exact(self) -> bool:
        return self.method.startswith("exact ratio")

    def significant(self, alpha: float) -> bool:
        if self.exact:
            return self.change != 1.0
        p = self.p_value if math.isnan(self.p_adjusted) else self.p_adjusted
        return p < alpha

    def shown(self) -> str:
        if self.metric == "accuracy":
            return f"{self.change * 100:+.2f} pp [{self.lo * 100:+.2f}, {self.hi * 100:+.2f}]"
        if self.exact:
            return f"x{self.change:.3f} (exact)"
        return f"x{self.change:.3f} [{self.lo:.3f}, {self.hi:.3f}]"


def _samples(rec: CellRecord):
    return rec.metrics.extra.get("samples") if rec.metrics is not None else None


def accuracy_delta(base: CellRecord, new: CellRecord) -> Delta | None:
    qa, qb = base.metrics.accuracy, new.metrics.accuracy
    if getattr(qa, "metric", "accuracy") != "accuracy" or getattr(qb, "metric", "accuracy") != "accuracy":
        return None  # regression quality: compared through its own metric in a later step, not as accuracy
    sa, sb = _samples(base), _samples(new)
    if sa is not None and sb is not None and not isinstance(sa, dict) and not isinstance(sb, dict) \
            and sa.split_digest == sb.split_digest and sa.kind == sb.kind == "class":
        t = mcnemar(sa.correct(), sb.correct())
        return Delta("accuracy", qa.value, qb.value, t.delta, t.delta_lo, t.delta_hi, t.p_value, t.method)
    d = unpaired_proportions(qa.value, qa.n, qb.value, qb.n)
    return Delta("accuracy", qa.value, qb.value, d.delta, d.lo, d.hi, d.p_value, d.method)


def _per_input(lat) -> np.ndarray | None:
    return per_input_means(lat.values, lat.n_inputs)


def batch1_pair(base: CellRecord, new: CellRecord):
    """The two batch-1 latency records to compare: at one thread setting both measured (the base's
    headline setting when the new run has it too, else the fewest threads both have); each side's
    headline when they share none (the caller then says the settings differ)."""
    def by_threads(rec: CellRecord) -> dict:
        return {r.threads: r for r in rec.metrics.latency_by_threads if r.batch_size == 1 and r.threads}

    a, b = by_threads(base), by_threads(new)
    common = sorted(a.keys() & b.keys())
    if not common:
        return base.metrics.batch1, new.metrics.batch1
    t = base.metrics.batch1.threads if base.metrics.batch1.threads in common else common[0]
    return a[t], b[t]


def latency_delta(base: CellRecord, new: CellRecord, *, resamples: int = 2000) -> Delta:
    la, lb = batch1_pair(base, new)
    sa, sb = _samples(base), _samples(new)
    same_split = sa is not None and sb is not None and getattr(sa, "split_digest", 1) == getattr(sb, "split_digest", 2)
    xa, xb = _per_input(la), _per_input(lb)
    if same_split and xa is not None and xb is not None and xa.size == xb.size and xa.size >= 2:
        r = paired_ratio(xa, xb, statistic="median", resamples=resamples)
        return Delta("latency", la.median, lb.median, r.ratio, r.lo, r.hi, r.p_value, r.method + " over inputs")
    r = unpaired_ratio(la.values, lb.values, resamples=resamples)
    return Delta("latency", la.median, lb.median, lb.median / la.median, r.lo, r.hi, r.p_value,
                 f"{r.method}; inputs not known to be the same, "
                 f"{la.threads} vs {lb.threads} thread(s)")


def size_delta(base: CellRecord, new: CellRecord) -> Delta | None:
    a, b = base.metrics.size.disk_bytes, new.metrics.size.disk_bytes
    if not a or not b:
        a, b = base.metrics.size.total_bytes, new.metrics.size.total_bytes
        how = "exact ratio of counted bytes (no files on disk)"
    else:
        how = "exact ratio of bytes on disk"
    if not a or not b:
        return None
    r = b / a
    return Delta("size", float(a), float(b), r, r, r, 1.0 if r == 1.0 else 0.0, how)


def deltas(base: CellRecord, new: CellRecord) -> list[Delta]:
    out = [accuracy_delta(base, new), latency_delta(base, new), size_delta(base, new)]
    return [d for d in out if d is not None]
