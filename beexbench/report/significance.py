"""The paired tests behind the report's pairwise statements (issue 29): each one a :class:`Test`
with its difference, interval, method, raw p and (after :mod:`beexbench.report.family`'s Holm
correction over every statement of the report) its adjusted p and verdict.

Which test a pair gets is decided by what the two models' cells share:

* quality (accuracy): several seeds in common -> paired t over those seeds (``seed_difference``);
  one seed in common and both cells keep per-sample outputs of the same split (``metrics.samples``,
  same ``split_digest``) -> exact McNemar; otherwise an unpaired two-proportion z-test, said so;
* latency (batch-1 median, a ratio "× faster"): several seeds -> paired t of log latency over the
  seeds; one seed with per-input latencies of the same inputs (equal ``n_inputs``, same split) ->
  paired bootstrap over inputs; otherwise the two 95% intervals of the median combined in log space
  (normal approximation), said "unpaired";
* sizes and operation counts are exact (no test).

Each cell's per-sample data reaches the report as a :class:`PairData` in the frame's ``paired``
column (:func:`pair_data`, attached by ``build_report`` from the records). The statistics are
:mod:`beexbench.stats`' (scipy); nothing here imports ``beexbench.compare`` (a layer above).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from .frame import num as _num
from ..stats import ALPHA, mcnemar, paired_ratio, per_input_means, seed_difference, unpaired_proportions

NOT_TESTED = "not tested"


@dataclass(frozen=True)
class PairData:
    """What a paired test needs of one cell: per-sample correctness and per-input latency."""

    correct: np.ndarray | None  # bool per test sample (classification), None: no per-sample outputs
    digest: str | None  # the test split's sha256 (pairs only equal digests)
    latency: np.ndarray | None  # batch-1 ms per input (mean over its repeats), None: inputs unknown


def per_input(lat) -> np.ndarray | None:
    """Each input's mean latency (``values[i]`` belongs to input ``i % n_inputs``); None without inputs."""
    return per_input_means(getattr(lat, "values", ()) or (), getattr(lat, "n_inputs", None))


def pair_data(record) -> PairData:
    """A record's :class:`PairData` (empty parts for records written before schema 4)."""
    m = record.metrics
    s = m.extra.get("samples") if m is not None else None
    if s is None or isinstance(s, dict):
        s = None
    correct = None
    if s is not None and s.kind == "class":
        try:
            correct = s.correct()
        except ValueError:  # a checksum that no longer matches: no pairing, never the wrong pairs
            s = None
    lat = per_input(m.batch1) if m is not None and m.batch1 is not None else None
    return PairData(correct, s.split_digest if s is not None else None, lat)


@dataclass(frozen=True)
class Test:
    """One pairwise statement: ``change`` of ``new`` against ``base`` with its interval and test."""

    what: str  # "accuracy, beexformer − fp32"
    unit: str  # "pp" (points of a ×100 quality), "x" (a ratio, > 1: new is faster)
    change: float
    lo: float  # NaN: no interval
    hi: float
    p_value: float  # raw, two-sided; NaN: not tested (``method`` says why)
    method: str
    p_adjusted: float = math.nan  # after the report's Holm correction
    family: int = 0  # how many tests the correction was over

    @property
    def tested(self) -> bool:
        return not math.isnan(self.p_value)

    def distinguishable(self, alpha: float = ALPHA) -> bool | None:
        """Below ``alpha`` after the correction (before it, while not yet corrected); None: not tested."""
        if not self.tested:
            return None
        p = self.p_value if math.isnan(self.p_adjusted) else self.p_adjusted
        return p < alpha

    @property
    def verdict(self) -> str:
        d = self.distinguishable()
        return NOT_TESTED if d is None else "distinguishable" if d else "not distinguishable"

    def shown(self) -> str:
        """The difference and its interval: ``-3.0 pp [-5.1, -0.9]`` or ``×1.80 [1.62, 2.01]``."""
        if math.isnan(self.change):
            return "—"
        if self.unit == "x":
            out = f"×{self.change:.2f}"
            return out + (f" [{self.lo:.2f}, {self.hi:.2f}]" if not math.isnan(self.lo) else "")
        out = f"{self.change * 100:+.1f} {self.unit}"
        return out + (f" [{self.lo * 100:+.1f}, {self.hi * 100:+.1f}]" if not math.isnan(self.lo) else "")

    def p_text(self) -> str:
        if not self.tested:
            return "no p-value"
        out = f"p = {self.p_value:.3g}"
        if not math.isnan(self.p_adjusted):
            out += f", Holm-adjusted p = {self.p_adjusted:.3g} over the report's {self.family} comparisons"
        return out

    def sentence(self) -> str:
        """``what: difference [interval] (method; p, Holm p): verdict``."""
        return f"{self.what}: {self.shown()} ({self.method}; {self.p_text()}): {self.verdict}"


def adjusted(tests: list[Test], method: str = "holm") -> list[Test]:
    """``tests`` with their adjusted p (one family: every tested statement); untested ones as they are."""
    from ..stats import adjust

    idx = [i for i, t in enumerate(tests) if t.tested]
    adj = adjust([tests[i].p_value for i in idx], method)
    out = list(tests)
    for i, p in zip(idx, adj):
        out[i] = replace(tests[i], p_adjusted=p, family=len(idx))
    return out


def by_seed(cells: pd.DataFrame, label: str) -> dict[int, pd.Series]:
    rows = cells[cells["label"] == label]
    return {int(r["seed"]): r for _, r in rows.iterrows()}


def _paired(r: pd.Series) -> PairData | None:
    p = r.get("paired") if "paired" in r.index else None
    return p if isinstance(p, PairData) else None


def _unpaired_z(pa: float, na: float, pb: float, nb: float) -> tuple[float, float, float, float]:
    """Difference, its Wald interval and the pooled two-sided z p of two independent proportions."""
    d = unpaired_proportions(pa, int(na), pb, int(nb))
    return d.delta, d.lo, d.hi, d.p_value


def quality_test(cells: pd.DataFrame, base: str, new: str, what: str, metric: str = "accuracy") -> Test:
    """Test quality of ``new`` against ``base`` (labels of one section's cells): change = new - base."""
    unit = "pp" if metric == "accuracy" else "(r ×100)"
    a, b = by_seed(cells, base), by_seed(cells, new)
    common = [s for s in sorted(set(a) & set(b)) if not (math.isnan(_num(a[s]["accuracy"])) or math.isnan(_num(b[s]["accuracy"])))]
    if len(common) >= 2:
        d = seed_difference([_num(a[s]["accuracy"]) for s in common], [_num(b[s]["accuracy"]) for s in common])
        return Test(what, unit, d.mean, d.lo, d.hi, d.p_value, f"paired t over {d.n} seeds ({', '.join(map(str, common))})")
    if common:
        ra, rb, seeds = a[common[0]], b[common[0]], f"one seed ({common[0]})"
    elif len(a) == 1 and len(b) == 1:
        ra, rb = next(iter(a.values())), next(iter(b.values()))
        seeds = f"one seed each, different seeds ({int(ra['seed'])} and {int(rb['seed'])})"
        if math.isnan(_num(ra["accuracy"])) or math.isnan(_num(rb["accuracy"])):
            return Test(what, unit, math.nan, math.nan, math.nan, math.nan, "not tested: a value is missing")
    else:
        return Test(what, unit, math.nan, math.nan, math.nan, math.nan, "not tested: no seed in common")
    pa, pb = _paired(ra), _paired(rb)
    if (common and metric == "accuracy" and pa is not None and pb is not None and pa.correct is not None
            and pb.correct is not None and pa.digest == pb.digest and pa.correct.shape == pb.correct.shape):
        t = mcnemar(pa.correct, pb.correct)
        return Test(what, unit, t.delta, t.delta_lo, t.delta_hi, t.p_value, f"exact McNemar on {t.n} test samples, {seeds}")
    va, vb, na, nb = _num(ra["accuracy"]), _num(rb["accuracy"]), _num(ra.get("accuracy_n")), _num(rb.get("accuracy_n"))
    if metric == "accuracy" and na > 0 and nb > 0:
        d, lo, hi, p = _unpaired_z(va, na, vb, nb)
        return Test(what, unit, d, lo, hi, p, f"unpaired two-proportion z (no per-sample outputs of one split), {seeds}")
    return Test(what, unit, vb - va, math.nan, math.nan, math.nan,
                f"not tested: {seeds} and no paired test of {metric} without per-sample outputs")


@dataclass(frozen=True)
class LatSide:
    """One cell's batch-1 latency for a ratio: median ms, its 95% interval, per-input values."""

    ms: float
    lo: float
    hi: float
    per_input: np.ndarray | None = None
    digest: str | None = None


def latency_side(r: pd.Series) -> LatSide | None:
    ms = _num(r.get("latency_ms"))
    if math.isnan(ms) or ms <= 0:
        return None
    lo, hi = _num(r.get("latency_lo")), _num(r.get("latency_hi"))
    p = _paired(r)
    return LatSide(ms, lo if lo > 0 else ms, hi if hi > 0 else ms, p.latency if p else None, p.digest if p else None)


def speedup_test(base: dict[int, LatSide], new: dict[int, LatSide], what: str) -> Test:
    """``base / new`` latency ("× faster" of new; > 1: new is faster) over the sides' seeds."""
    common = sorted(set(base) & set(new))
    if len(common) >= 2:
        d = seed_difference([math.log(new[s].ms) for s in common], [math.log(base[s].ms) for s in common])
        lo, hi = (math.exp(d.lo), math.exp(d.hi)) if not math.isnan(d.lo) else (math.nan, math.nan)
        return Test(what, "x", math.exp(d.mean), lo, hi, d.p_value,
                    f"paired t of log latency over {d.n} seeds ({', '.join(map(str, common))})")
    if common:
        a, b, seeds = base[common[0]], new[common[0]], f"one seed ({common[0]})"
    elif len(base) == 1 and len(new) == 1:
        a, b, seeds = next(iter(base.values())), next(iter(new.values())), "one seed each, different seeds"
    else:
        return Test(what, "x", math.nan, math.nan, math.nan, math.nan, "not tested: no seed in common")
    if (common and a.per_input is not None and b.per_input is not None and a.per_input.size == b.per_input.size >= 2
            and a.digest is not None and a.digest == b.digest):
        r = paired_ratio(b.per_input, a.per_input, statistic="median")
        return Test(what, "x", r.ratio, r.lo, r.hi, r.p_value, f"{r.method} over the same {r.n} inputs, {seeds}")
    r = a.ms / b.ms
    ha = math.log(a.hi / a.lo) / 2 if a.hi >= a.lo > 0 else 0.0
    hb = math.log(b.hi / b.lo) / 2 if b.hi >= b.lo > 0 else 0.0
    h = math.hypot(ha, hb)
    if h == 0:
        return Test(what, "x", r, math.nan, math.nan, math.nan, f"not tested: no interval of the median, {seeds}")
    from scipy.stats import norm

    p = float(2 * norm.sf(abs(math.log(r)) / (h / 1.96)))
    return Test(what, "x", r, r * math.exp(-h), r * math.exp(h), p,
                f"unpaired: the two 95% intervals of the median combined in log space (normal approximation), {seeds}")


def latency_sides(cells: pd.DataFrame, label: str) -> dict[int, LatSide]:
    out = {s: latency_side(r) for s, r in by_seed(cells, label).items()}
    return {s: v for s, v in out.items() if v is not None}
