"""Private helpers shared by the profilers: summary statistics and the pending-record handle."""
from __future__ import annotations

from typing import Generic, Sequence, TypeVar

import numpy as np

R = TypeVar("R")

BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 0


def bootstrap_median_ci(values: Sequence[float], resamples: int = BOOTSTRAP_RESAMPLES,
                        seed: int = BOOTSTRAP_SEED, level: float = 0.95) -> tuple[float, float]:
    """Percentile-bootstrap confidence interval of the median (seeded, so reproducible)."""
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        raise ValueError("no values")
    if x.size == 1:
        return float(x[0]), float(x[0])
    rng = np.random.default_rng(seed)
    # Resample in chunks so a long run (1e5 values) stays within a few tens of MB.
    chunk = max(1, min(resamples, 4_000_000 // x.size))
    medians = []
    done = 0
    while done < resamples:
        k = min(chunk, resamples - done)
        medians.append(np.median(x[rng.integers(0, x.size, size=(k, x.size))], axis=1))
        done += k
    alpha = (1 - level) / 2
    lo, hi = np.quantile(np.concatenate(medians), [alpha, 1 - alpha])
    return float(lo), float(hi)


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
