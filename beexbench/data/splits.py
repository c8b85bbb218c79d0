"""Deterministic stratified splitting and subsampling (numpy only)."""
from __future__ import annotations

from typing import Sequence

import numpy as np

__all__ = ["SPLIT_SEED", "SPLIT_FRACTIONS", "strata_for", "stratified_split", "stratified_subsample"]

SPLIT_SEED = 1234
# Bump when the split algorithm changes its output; part of every task cache recipe.
SPLIT_RECIPE = "strat-cells-1"
SPLIT_FRACTIONS = (0.8, 0.1, 0.1)


def strata_for(labels: Sequence, problem: str = "classification", bins: int = 10) -> np.ndarray:
    """Integer strata: class ids for classification, quantile bins for regression."""
    y = np.asarray(labels)
    if problem == "regression":
        y = y.astype(np.float64)
        if y.size == 0:
            return np.zeros(0, dtype=np.int64)
        edges = np.unique(np.quantile(y, np.linspace(0, 1, bins + 1)[1:-1]))
        return np.searchsorted(edges, y, side="right").astype(np.int64)
    _, inv = np.unique(y, return_inverse=True)
    return inv.astype(np.int64).reshape(-1)


def _allocate(n: int, fractions: Sequence[float]) -> list[int]:
    """Split ``n`` into parts following ``fractions`` (largest remainder, ties
    to later parts first so small classes still reach val/test)."""
    raw = [n * f for f in fractions]
    counts = [int(np.floor(r)) for r in raw]
    rest = n - sum(counts)
    order = sorted(range(len(raw)), key=lambda i: (-(raw[i] - counts[i]), -i))
    for i in order[:rest]:
        counts[i] += 1
    return counts


def _cell_counts(class_sizes: Sequence[int], fractions: Sequence[float]) -> list[list[int]]:
    """Per-class, per-split counts: split totals follow ``fractions`` of the
    whole (largest remainder) and each class is divided as evenly as allowed."""
    totals = _allocate(sum(class_sizes), fractions)
    table = [[int(np.floor(n * f)) for f in fractions] for n in class_sizes]
    left = [n - sum(row) for n, row in zip(class_sizes, table)]
    need = [t - sum(row[k] for row in table) for k, t in enumerate(totals)]
    cells = sorted(
        ((n * f - np.floor(n * f), ci, k) for ci, n in enumerate(class_sizes)
         for k, f in enumerate(fractions)),
        key=lambda x: (-x[0], x[1], -x[2]),
    )
    for _, ci, k in cells:  # largest remainders first
        if left[ci] > 0 and need[k] > 0:
            table[ci][k] += 1
            left[ci] -= 1
            need[k] -= 1
    for ci in range(len(class_sizes)):  # whatever is left, in fixed order
        for k in range(len(fractions)):
            while left[ci] > 0 and need[k] > 0:
                table[ci][k] += 1
                left[ci] -= 1
                need[k] -= 1
    return table


def stratified_split(
    strata: Sequence[int] | np.ndarray,
    fractions: Sequence[float] = SPLIT_FRACTIONS,
    seed: int = SPLIT_SEED,
) -> list[np.ndarray]:
    """Row indices for each split; every stratum is divided by ``fractions``.

    Deterministic for a given ``strata`` array, ``fractions`` and ``seed``;
    each returned index array is shuffled (seeded) so splits are not grouped
    by class.
    """
    s = np.asarray(strata).reshape(-1)
    rng = np.random.Generator(np.random.PCG64(seed))
    values = np.unique(s)
    table = _cell_counts([int((s == v).sum()) for v in values], fractions)
    parts: list[list[np.ndarray]] = [[] for _ in fractions]
    for ci, value in enumerate(values):
        idx = np.flatnonzero(s == value)
        idx = idx[rng.permutation(idx.size)]
        start = 0
        for k, c in enumerate(table[ci]):
            parts[k].append(idx[start:start + c])
            start += c
    out = []
    for chunks in parts:
        cat = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int64)
        out.append(cat[rng.permutation(cat.size)].astype(np.int64))
    return out


def stratified_subsample(
    strata: Sequence[int] | np.ndarray, n: int, seed: int = SPLIT_SEED
) -> np.ndarray:
    """Sorted indices of a deterministic stratified subsample of size ``min(n, len)``.

    Every stratum keeps at least one row when ``n`` allows it.
    """
    s = np.asarray(strata).reshape(-1)
    total = s.size
    if n >= total:
        return np.arange(total, dtype=np.int64)
    if n <= 0:
        return np.zeros(0, dtype=np.int64)
    rng = np.random.Generator(np.random.PCG64(seed))
    values, counts = np.unique(s, return_counts=True)
    want = counts * (n / total)
    take = np.floor(want).astype(np.int64)
    if n >= values.size:
        take = np.maximum(take, 1)
    take = np.minimum(take, counts)
    # adjust to exactly n: add to / remove from the largest remainders
    diff = n - int(take.sum())
    order = np.argsort(-(want - np.floor(want)), kind="stable")
    i = 0
    while diff != 0 and i < 10 * values.size + n:
        j = order[i % values.size]
        if diff > 0 and take[j] < counts[j]:
            take[j] += 1
            diff -= 1
        elif diff < 0 and take[j] > 1:
            take[j] -= 1
            diff += 1
        i += 1
    chosen = []
    for v, k in zip(values, take):
        idx = np.flatnonzero(s == v)
        chosen.append(idx[rng.permutation(idx.size)[:k]])
    return np.sort(np.concatenate(chosen))
