"""Private helpers shared by the profilers: summary statistics and the pending-record handle."""
from __future__ import annotations

from typing import Generic, Sequence, TypeVar

import numpy as np

R = TypeVar("R")

BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 0
DIRECT_BOOTSTRAP_MAX = 2000  # above this many values, draw the bootstrap medians via order statistics


def bootstrap_median_ci(values: Sequence[float], resamples: int = BOOTSTRAP_RESAMPLES,
                        seed: int = BOOTSTRAP_SEED, level: float = 0.95) -> tuple[float, float]:
    """Percentile-bootstrap confidence interval of the median (seeded, so reproducible).

    Up to ``DIRECT_BOOTSTRAP_MAX`` values the resamples are drawn literally. Beyond that (a long run
    of tiny calls) the same bootstrap distribution is drawn in O(resamples): the k-th smallest of n
    uniform draws is Beta(k, n + 1 - k), so the resample's k-th order statistic is
    ``sorted(x)[floor(n * U_(k))]``.
    """
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        raise ValueError("no values")
    if x.size == 1:
        return float(x[0]), float(x[0])
    rng = np.random.default_rng(seed)
    if x.size <= DIRECT_BOOTSTRAP_MAX:
        medians = np.median(x[rng.integers(0, x.size, size=(resamples, x.size))], axis=1)
    else:
        medians = _order_statistic_medians(np.sort(x), resamples, rng)
    alpha = (1 - level) / 2
    lo, hi = np.quantile(medians, [alpha, 1 - alpha])
    return float(lo), float(hi)


def _order_statistic_medians(sorted_x: np.ndarray, resamples: int, rng: np.random.Generator) -> np.ndarray:
    n = sorted_x.size
    k = (n + 1) // 2  # 1-based rank of the (lower) middle value
    u_k = rng.beta(k, n + 1 - k, size=resamples)
    lower = sorted_x[np.minimum((n * u_k).astype(np.int64), n - 1)]
    if n % 2:
        return lower
    # Even n: the median also needs the (k+1)-th order statistic, the next of the remaining
    # n - k uniforms above u_k: u_k + (1 - u_k) * Beta(1, n - k).
    u_k1 = u_k + (1 - u_k) * rng.beta(1, n - k, size=resamples)
    upper = sorted_x[np.minimum((n * u_k1).astype(np.int64), n - 1)]
    return (lower + upper) / 2


def summarize(values: Sequence[float]) -> dict[str, float]:
    """Median, p90, p99, IQR, mean, std, min, max (numpy's linear percentiles)."""
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        raise ValueError("no values")
    p25, p50, p75, p90, p99 = np.percentile(x, [25, 50, 75, 90, 99])
    return {
        "median": float(p50), "p90": float(p90), "p99": float(p99), "iqr": float(p75 - p25),
        "mean": float(x.mean()), "std": float(x.std(ddof=1)) if x.size > 1 else 0.0,
        "min": float(x.min()), "max": float(x.max()),
    }


class Pending(Generic[R]):
    """What a tracking context manager yields: its ``record`` is there once the block has exited."""

    def __init__(self, what: str) -> None:
        self._what = what
        self._record: R | None = None

    @property
    def record(self) -> R:
        if self._record is None:
            raise RuntimeError(f"the {self._what} record exists only after the `with` block has exited")
        return self._record

    def _set(self, record: R) -> None:
        self._record = record

    def __repr__(self) -> str:
        return f"Pending({self._record!r})" if self._record is not None else f"Pending({self._what}: running)"
