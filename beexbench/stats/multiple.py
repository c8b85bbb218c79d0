"""Correction over the comparisons one report (or one ``compare``) makes: Holm's step-down
(family-wise error, the default) and Benjamini–Hochberg (false discovery rate, scipy's
``false_discovery_control``). Both return adjusted p-values in the input order, so a caller keeps
each comparison's own result and only swaps its p."""
from __future__ import annotations

from typing import Sequence

import numpy as np

METHODS = ("holm", "bh", "none")


def adjust(p_values: Sequence[float], method: str = "holm") -> list[float]:
    """Adjusted p-values (each in [0, 1]) of ``p_values`` under ``method``."""
    p = np.asarray(p_values, dtype=float)
    if p.ndim != 1 or np.any(~np.isfinite(p)) or np.any((p < 0) | (p > 1)):
        raise ValueError("p-values must be a 1-d sequence of numbers in [0, 1]")
    if p.size == 0 or method == "none":
        return p.tolist()
    if method == "bh":
        from scipy.stats import false_discovery_control

        return false_discovery_control(p, method="bh").tolist()
    if method != "holm":
        raise ValueError(f"unknown correction '{method}': use one of {', '.join(METHODS)}")
    m = p.size
    order = np.argsort(p, kind="stable")
    stepped = np.maximum.accumulate((m - np.arange(m)) * p[order])
    out = np.empty(m)
    out[order] = np.minimum(stepped, 1.0)
    return out.tolist()
