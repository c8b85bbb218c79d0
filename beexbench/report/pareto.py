"""Non-dominated models: higher accuracy is better, lower cost is better."""
from __future__ import annotations

import numpy as np
import pandas as pd


def pareto_mask(df: pd.DataFrame, cost: str, quality: str = "accuracy") -> pd.Series:
    """True for rows no other row beats (<= cost and >= quality, one strictly); rows missing
    either number are on no front."""
    c = pd.to_numeric(df[cost], errors="coerce").to_numpy(dtype=float)
    q = pd.to_numeric(df[quality], errors="coerce").to_numpy(dtype=float)
    ok = ~(np.isnan(c) | np.isnan(q))
    cc, qq = c[ok], q[ok]
    # beats[i, j]: row j beats row i
    beats = (cc[None, :] <= cc[:, None]) & (qq[None, :] >= qq[:, None]) & ((cc[None, :] < cc[:, None]) | (qq[None, :] > qq[:, None]))
    mask = np.zeros(len(df), dtype=bool)
    mask[ok] = ~beats.any(axis=1)
    return pd.Series(mask, index=df.index)
