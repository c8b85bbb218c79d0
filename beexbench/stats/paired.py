"""Paired tests for differences measured on the same inputs (issue 29): two models scored on one
test split, two latency samples of the same inputs, one metric over the same seeds.

Every function returns a typed result that says which test it ran, so a sentence built from it
can name the method. scipy computes the distributions (``binomtest`` for the exact McNemar,
``t`` for the seed interval, ``bootstrap`` for ratios); nothing here approximates what scipy
computes exactly. A difference is "distinguishable" only when its p-value (after the family's
correction, :mod:`beexbench.stats.multiple`) is below ``alpha``; otherwise the result says "not
distinguishable", which is a finding, not a failure.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

ALPHA = 0.05


@dataclass(frozen=True)
class McNemar:
    """Exact McNemar test of two classifiers' correctness on the same samples."""

    n: int  # samples compared
    only_a: int  # a right, b wrong
    only_b: int  # b right, a wrong
    p_value: float  # two-sided exact binomial test on the discordant pairs (1.0 when there are none)
    delta: float  # accuracy(b) - accuracy(a), in [-1, 1]
    delta_lo: float  # its 95% interval (Wald on the paired difference; the test is the exact p)
    delta_hi: float
    method: str = "exact McNemar (binomial on discordant pairs)"

    def distinguishable(self, alpha: float = ALPHA) -> bool:
        return self.p_value < alpha


def mcnemar(a_correct: Sequence[bool] | np.ndarray, b_correct: Sequence[bool] | np.ndarray) -> McNemar:
    """Exact McNemar of ``b`` against ``a`` (per-sample correctness, same samples, same order)."""
    from scipy.stats import binomtest

    a, b = np.asarray(a_correct, dtype=bool), np.asarray(b_correct, dtype=bool)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired correctness must be two 1-d arrays of one length, got {a.shape} and {b.shape}")
    n = int(a.size)
    if n == 0:
        raise ValueError("no samples to compare")
    only_a, only_b = int((a & ~b).sum()), int((b & ~a).sum())
    discordant = only_a + only_b
    p = 1.0 if discordant == 0 else float(binomtest(only_b, discordant, 0.5).pvalue)
    delta = (only_b - only_a) / n
    se = math.sqrt(max(discordant - (only_b - only_a) ** 2 / n, 0.0)) / n
    return McNemar(n=n, only_a=only_a, only_b=only_b, p_value=p, delta=delta,
                   delta_lo=delta - 1.96 * se, delta_hi=delta + 1.96 * se)


@dataclass(frozen=True)
class Ratio:
    """``statistic(b) / statistic(a)`` on paired samples with a bootstrap interval."""

    ratio: float
    lo: float
    hi: float
    p_value: float  # share of resamples on the other side of 1 (two-sided, bootstrap)
    n: int
    method: str

    def distinguishable(self, alpha: float = ALPHA) -> bool:
        return self.p_value < alpha


def paired_ratio(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray, *, statistic: str = "median",
                 resamples: int = 2000, seed: int = 0) -> Ratio:
    """Ratio of ``statistic`` of ``b`` to that of ``a`` where ``a[i]`` and ``b[i]`` were measured on
    the same input (a paired bootstrap: the same resampled indices for both sides)."""
    stat = {"median": np.median, "mean": np.mean}.get(statistic)
    if stat is None:
        raise ValueError(f"unknown statistic '{statistic}': use median or mean")
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if x.shape != y.shape or x.ndim != 1 or x.size < 2:
        raise ValueError(f"paired samples must be two 1-d arrays of one length >= 2, got {x.shape} and {y.shape}")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y)) and np.all(x > 0) and np.all(y > 0)):
        raise ValueError("paired ratio needs finite positive values")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, x.size, size=(resamples, x.size))
    return _ratio(stat(y[idx], axis=1) / stat(x[idx], axis=1), float(stat(y) / stat(x)), int(x.size), resamples,
                  f"paired bootstrap of the {statistic} ratio ({resamples} resamples, percentile interval)")


def unpaired_ratio(a: Sequence[float], b: Sequence[float], *, resamples: int = 2000, seed: int = 0) -> Ratio:
    """Ratio of the medians of ``b`` and ``a`` measured on inputs not known to be the same: each side
    resampled on its own (labelled unpaired in ``method``)."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if x.size < 1 or y.size < 1:
        raise ValueError("each side needs at least one value")
    rng = np.random.default_rng(seed)
    boot = (np.median(y[rng.integers(0, y.size, (resamples, y.size))], 1)
            / np.median(x[rng.integers(0, x.size, (resamples, x.size))], 1))
    return _ratio(boot, float(np.median(y) / np.median(x)), int(min(x.size, y.size)), resamples,
                  f"unpaired bootstrap of the median ratio ({resamples} resamples)")


def _ratio(boot: np.ndarray, point: float, n: int, resamples: int, method: str) -> Ratio:
    lo, hi = (float(v) for v in np.quantile(boot, [0.025, 0.975]))
    side = min(float((boot <= 1.0).mean()), float((boot >= 1.0).mean()))
    p = min(1.0, 2 * max(side, 1.0 / resamples))  # never 0: the resampling resolves no finer than 1/resamples
    return Ratio(ratio=point, lo=lo, hi=hi, p_value=p, n=n, method=method)


@dataclass(frozen=True)
class SeedDifference:
    """Mean of ``b - a`` over seeds (each seed one pair) with a t-interval and test."""

    mean: float
    lo: float
    hi: float
    p_value: float
    n: int
    method: str = "paired t over seeds"

    def distinguishable(self, alpha: float = ALPHA) -> bool:
        return self.p_value < alpha


def seed_difference(a: Sequence[float], b: Sequence[float]) -> SeedDifference:
    """The paired t-interval (95%) and two-sided p of the per-seed differences ``b - a``. With one
    seed there is no interval: the result has NaN bounds and p = 1 ("one seed is an anecdote")."""
    from scipy import stats

    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if x.shape != y.shape or x.ndim != 1 or x.size == 0:
        raise ValueError(f"per-seed values must be two 1-d arrays of one length, got {x.shape} and {y.shape}")
    d = y - x
    n = int(d.size)
    mean = float(d.mean())
    if n < 2:
        return SeedDifference(mean=mean, lo=math.nan, hi=math.nan, p_value=1.0, n=n)
    sd = float(d.std(ddof=1))
    if sd == 0.0:  # every seed moved by exactly the same amount: the t statistic is undefined
        p = 1.0 if mean == 0.0 else 0.0
        return SeedDifference(mean=mean, lo=mean, hi=mean, p_value=p, n=n)
    half = float(stats.t.ppf(0.975, n - 1)) * sd / math.sqrt(n)
    p = float(stats.ttest_rel(y, x).pvalue)
    return SeedDifference(mean=mean, lo=mean - half, hi=mean + half, p_value=p, n=n)


@dataclass(frozen=True)
class Difference:
    """b - a of two independent proportions (records without per-sample outputs)."""

    delta: float
    lo: float  # Wald 95% interval
    hi: float
    p_value: float  # pooled two-sided z test
    method: str = "unpaired two-proportion z (no per-sample outputs to pair)"

    def distinguishable(self, alpha: float = ALPHA) -> bool:
        return self.p_value < alpha


def unpaired_proportions(pa: float, na: int, pb: float, nb: int) -> Difference:
    """Two accuracies measured on samples that cannot be paired: their difference with a Wald
    interval and the pooled two-proportion z test (labelled so in ``method``)."""
    from scipy.stats import norm

    if not na or not nb:
        raise ValueError("both proportions need their sample counts")
    d = pb - pa
    se = math.sqrt(pa * (1 - pa) / na + pb * (1 - pb) / nb)
    pooled = (pa * na + pb * nb) / (na + nb)
    se0 = math.sqrt(pooled * (1 - pooled) * (1 / na + 1 / nb))
    p = 1.0 if se0 == 0 else float(2 * norm.sf(abs(d) / se0))
    return Difference(delta=d, lo=d - 1.96 * se, hi=d + 1.96 * se, p_value=p)


def per_input_means(values: Sequence[float], n_inputs: int | None) -> np.ndarray | None:
    """Each input's mean over its repeats, where ``values[i]`` belongs to input ``i % n_inputs``
    (a latency record's convention); None without inputs or with fewer values than inputs."""
    vals = np.asarray(values or (), dtype=float)
    if not n_inputs or vals.size < n_inputs:
        return None
    vals = vals[: (vals.size // n_inputs) * n_inputs]
    idx = np.arange(vals.size) % n_inputs
    return np.bincount(idx, weights=vals, minlength=n_inputs) / np.bincount(idx, minlength=n_inputs)
