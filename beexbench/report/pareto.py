"""Non-dominated models: higher accuracy is better, lower cost is better."""
from __future__ import annotations

import pandas as pd


def pareto_mask(df: pd.DataFrame, cost: str, quality: str = "accuracy") -> pd.Series:
    """True for rows no other row beats (<= cost and >= quality, one strictly)."""
    ok = df[[cost, quality]].notna().all(axis=1)
    mask = pd.Series(False, index=df.index)
    sub = df[ok]
    for i, row in sub.iterrows():
        better = (sub[cost] <= row[cost]) & (sub[quality] >= row[quality]) & (
            (sub[cost] < row[cost]) | (sub[quality] > row[quality])
        )
        mask[i] = not better.any()
    return mask
