"""Seaborn figures, returned as self-contained ``data:`` URIs (no external requests)."""
from __future__ import annotations

import base64
import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from .pareto import pareto_mask  # noqa: E402


def to_data_uri(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def pareto_plot(df: pd.DataFrame, cost: str, cost_label: str, title: str, *, log_x: bool = False,
                err: tuple[str, str] | None = None) -> str:
    """Accuracy against ``cost``, one colour per model, the non-dominated front drawn and ringed."""
    sns.set_theme(style="whitegrid", context="notebook")
    fig, ax = plt.subplots(figsize=(7.0, 4.4))
    d = df.dropna(subset=[cost, "accuracy"]).copy()
    d["front"] = pareto_mask(d, cost)
    sns.scatterplot(data=d, x=cost, y="accuracy", hue="model", style="model", s=90, ax=ax, zorder=3)
    yerr = [d["accuracy"] - d["accuracy_lo"], d["accuracy_hi"] - d["accuracy"]] if d["accuracy_lo"].notna().all() else None
    xerr = None
    if err and d[err[0]].notna().all():
        xerr = [d[cost] - d[err[0]], d[err[1]] - d[cost]]
    ax.errorbar(d[cost], d["accuracy"], yerr=yerr, xerr=xerr, fmt="none", ecolor="grey", alpha=0.6, zorder=2)
    front = d[d["front"]].sort_values(cost)
    ax.plot(front[cost], front["accuracy"], "--", color="black", lw=1, zorder=1, label="Pareto front")
    ax.scatter(front[cost], front["accuracy"], s=260, facecolors="none", edgecolors="black", zorder=4, label="non-dominated")
    if log_x:
        ax.set_xscale("log")
    ax.set_xlabel(cost_label)
    ax.set_ylabel("test accuracy (95% CI)")
    ax.set_title(title)
    ax.legend(loc="best", fontsize=8, frameon=True)
    return to_data_uri(fig)
