"""Seaborn figures, returned as self-contained ``data:`` URIs (no external requests)."""
from __future__ import annotations

import base64
import io
import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from ..results.columns import columns  # noqa: E402
from .frame import quality_of  # noqa: E402
from .pareto import pareto_mask  # noqa: E402

DPI = 96


def text(s) -> str:
    """A name as matplotlib should print it: literally (no mathtext, never hidden from the legend)."""
    s = str(s).replace("$", r"\$")
    return " " + s if s.startswith("_") else s


def to_data_uri(fig) -> str:
    """PNG, palette-quantised (about a third of the bytes, no visible loss on flat-colour plots)."""
    from PIL import Image

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    buf.seek(0)
    small = io.BytesIO()
    Image.open(buf).convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(small, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(small.getvalue()).decode("ascii")


def _theme():
    sns.set_theme(style="whitegrid", context="notebook", font_scale=0.9)


def _palette(labels) -> dict:
    labels = sorted(set(labels))
    return dict(zip(labels, sns.color_palette("tab10" if len(labels) <= 10 else "husl", len(labels))))


def _legend_outside(ax, **kw):
    handles, labels = ax.get_legend_handles_labels()
    labels = [{"name": "model", "split": "split"}.get(x, x) for x in labels]
    ax.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False, **kw)


FLOOR_COLOURS = ("#6e6e6e", "#b2182b", "#5e3c99")  # reference lines, lowest floor first


FLOOR_MARKERS = {"bow-linear": "*", "majority": "p"}  # a floor's point on the Pareto figures (no model marker of seaborn's first 11); others: "h"


def floor_colours(floors) -> dict:
    """Each floor's colour, by rank of its value (the lowest first): its line and its point share it."""
    return {name: FLOOR_COLOURS[i % len(FLOOR_COLOURS)] for i, (name, _) in enumerate(sorted(floors, key=lambda f: f[1]))}


def floor_lines(ax, floors) -> None:
    """Dashed horizontal reference lines, one per reference floor ``(name, value ×100)``,
    each named in the legend and at the right end of its line."""
    floors = sorted(floors, key=lambda f: f[1])
    colours = floor_colours(floors)
    for name, y in floors:
        colour = colours[name]
        ax.axhline(y, color=colour, ls=(0, (6, 3)), lw=1.4, zorder=1.5, label=f"{text(name)} — reference floor")
        ax.annotate(f"{text(name)} {y:.1f}", xy=(1.0, y), xycoords=("axes fraction", "data"), xytext=(-4, 3),
                    textcoords="offset points", ha="right", va="bottom", fontsize=8, color=colour, zorder=6,
                    bbox={"boxstyle": "square,pad=0.1", "fc": "white", "ec": "none", "alpha": 0.75})
    if floors:  # room for the labels above the highest line and below the lowest
        lo, hi = ax.get_ylim()
        span = hi - lo
        ax.set_ylim(min(lo, floors[0][1] - 0.04 * span), max(hi, floors[-1][1] + 0.1 * span))


def floor_points(ax, points, colours: dict, *, log_x: bool) -> None:
    """The reference floors as points at their own cost ``(name, x, y ×100)``: a distinct marker
    each (never a Pareto candidate), named beside the point and in the legend. On a log axis a
    floor whose cost is 0 sits at the left edge, marked as off the axis."""
    from matplotlib.transforms import blended_transform_factory

    for name, x, y in points:
        colour, marker = colours.get(name, FLOOR_COLOURS[0]), FLOOR_MARKERS.get(str(name), "h")
        style = dict(marker=marker, s=200 if marker == "*" else 120, color=colour, edgecolors="black", linewidths=0.8, zorder=5)
        if log_x and x <= 0:
            edge = blended_transform_factory(ax.transAxes, ax.transData)
            ax.scatter([0.0], [y], transform=edge, clip_on=False, label=f"{text(name)} — reference floor (cost {x:g}: off the log axis)", **style)
            ax.annotate(f"{text(name)} (cost {x:g})", xy=(0.0, y), xycoords=edge, xytext=(6, -10), textcoords="offset points",
                        fontsize=8, color=colour, zorder=6)
            continue
        ax.scatter([x], [y], label=f"{text(name)} — reference floor (point: its own cost)", **style)
        ax.annotate(text(name), xy=(x, y), xytext=(6, -10), textcoords="offset points", fontsize=8, color=colour, zorder=6,
                    bbox={"boxstyle": "square,pad=0.1", "fc": "white", "ec": "none", "alpha": 0.75})


def pareto_axes() -> list[tuple[str, str, str, float, bool, tuple[str, str] | None]]:
    """The Pareto figures, one per declared column with a ``plot``: (cost column, its name in
    titles, x-axis label, scale to the shown unit, log x, x error-bar columns)."""
    return [(c.name, c.plot.name, c.plot.label, c.plot.scale, c.plot.log_x, c.plot.err) for c in columns() if c.plot]


def pareto_plot(df: pd.DataFrame, cost: str, cost_label: str, title: str, *, scale: float = 1.0,
                log_x: bool = False, err: tuple[str, str] | None = None, floors=(), floor_rows=None,
                front: pd.Series | None = None) -> str:
    """Accuracy (%) or Pearson r ×100 against ``cost`` × ``scale``, one colour and marker per model; the non-dominated
    models are ringed and joined by the dashed front; error bars where intervals exist. ``floors``:
    ``(name, value ×100)`` of the reference floors, drawn as dashed horizontal lines; ``floor_rows``: their
    rows, also drawn as points at their own cost (:func:`floor_points`), never on the front. ``front``: the
    ringed rows when given (:func:`beexbench.report.dominance.significant_front`), else the geometric front."""
    _theme()
    d = df.dropna(subset=[cost, "accuracy"]).copy()
    d["front"] = pareto_mask(d, cost) if front is None else front.reindex(d.index, fill_value=False).astype(bool)
    d["x"] = d[cost] * scale
    d["y"] = d["accuracy"] * 100
    d["name"] = d["label"].map(text)
    fig, ax = plt.subplots(figsize=(6.4, 3.9))
    sns.scatterplot(data=d, x="x", y="y", hue="name", style="name", palette=_palette(d["name"]), s=80, ax=ax, zorder=3)
    yerr = [(d["y"] - d["accuracy_lo"] * 100).fillna(0).clip(lower=0), (d["accuracy_hi"] * 100 - d["y"]).fillna(0).clip(lower=0)]
    xerr = None
    if err and d[err[0]].notna().any():
        xerr = [(d["x"] - d[err[0]] * scale).fillna(0).clip(lower=0), (d[err[1]] * scale - d["x"]).fillna(0).clip(lower=0)]
    ax.errorbar(d["x"], d["y"], yerr=yerr, xerr=xerr, fmt="none", ecolor="grey", alpha=0.7, capsize=2, zorder=2)
    front = d[d["front"]].sort_values("x")
    ax.plot(front["x"], front["y"], "--", color="black", lw=1, zorder=1, label="Pareto front")
    ax.scatter(front["x"], front["y"], s=230, facecolors="none", edgecolors="black", zorder=4, label="non-dominated")
    points = []
    if floor_rows is not None and len(floor_rows):
        f = floor_rows.dropna(subset=[cost, "accuracy"])
        points = [(str(r["label"]), float(r[cost]) * scale, float(r["accuracy"]) * 100) for _, r in f.iterrows()]
    xs = list(d["x"]) + [x for _, x, _ in points if x > 0]
    log = log_x and (d["x"] > 0).all() and max(xs) / max(min(xs), 1e-12) > 20
    floor_points(ax, [p for p in points if not (log and p[1] <= 0)], floor_colours(floors), log_x=False)
    if log:
        ax.set_xscale("log")
    floor_points(ax, [p for p in points if log and p[1] <= 0], floor_colours(floors), log_x=True)
    floor_lines(ax, floors)
    ax.set_xlabel(cost_label)
    ax.set_ylabel("test " + quality_of(df).axis)
    ax.set_title(text(title), fontsize=10)
    _legend_outside(ax)
    return to_data_uri(fig)


def exit_histogram_plot(df: pd.DataFrame, title: str) -> str | None:
    """Share of test samples leaving at each exit block, one bar colour per early-exit model."""
    rows = []
    for _, r in df.iterrows():
        hist = r["exit_histogram"] or []
        total = sum(hist)
        if total and len(hist) > 1:
            rows += [{"name": text(r["label"]), "exit block": i + 1, "share": 100 * c / total} for i, c in enumerate(hist)]
    if not rows:
        return None
    _theme()
    d = pd.DataFrame(rows)
    fig, ax = plt.subplots(figsize=(6.4, 3.4))
    sns.barplot(data=d, x="exit block", y="share", hue="name", palette=_palette(d["name"]), ax=ax)
    ax.set_ylabel("test samples exiting here (%)")
    ax.set_xlabel("exit after block")
    ax.set_title(text(title), fontsize=10)
    _legend_outside(ax)
    return to_data_uri(fig)


def _sweep_rows(df: pd.DataFrame, column: str, split: str, key: str) -> list[dict]:
    rows = []
    for _, r in df.iterrows():
        param = r["calibration_param"]
        for seed, sweep in r[column]:
            for i, s in enumerate(sweep):
                x = s.get("mean_macs")
                rows.append({"name": text(r["label"]), "split": split, "seed": seed,
                             "step": s.get(param, i), "accuracy": 100 * s[key],
                             "x": x / 1e6 if x is not None else float("nan"),
                             "mean exit": s.get("mean_exit_block")})
    return rows


def tradeoff_plot(df: pd.DataFrame, title: str, floors=()) -> str | None:
    """The exit threshold (δ) sweep: accuracy against mean MACs per sample, validation split
    (calibration, dashed) and test split (solid), averaged over seeds at each δ; the reference
    floors' test scores as horizontal lines."""
    q = quality_of(df)
    rows = _sweep_rows(df, "val_sweep", "val (calibration)", q.key) + _sweep_rows(df, "test_sweep", "test", q.key)
    if not rows:
        return None
    d = pd.DataFrame(rows)
    use_macs = d["x"].notna().all()
    if not use_macs:
        d["x"] = d["mean exit"]
    d = d.groupby(["name", "split", "step"], as_index=False)[["accuracy", "x"]].mean()
    _theme()
    fig, ax = plt.subplots(figsize=(6.4, 3.9))
    sns.lineplot(data=d, x="x", y="accuracy", hue="name", style="split", markers=True, dashes={"test": "", "val (calibration)": (4, 2)},
                 palette=_palette(d["name"]), sort=True, estimator=None, ax=ax, markersize=5)
    chosen = []
    for _, r in df.iterrows():
        for seed, sweep in r["test_sweep"]:
            ch = r["calibration_chosen"][0] if r["calibration_chosen"] else None
            for s in sweep:
                if ch is not None and s.get(r["calibration_param"]) == ch:
                    chosen.append((s.get("mean_macs", math.nan), 100 * s[q.key], s.get("mean_exit_block")))
            break
    if chosen:
        xs = [c[0] / 1e6 if use_macs else c[2] for c in chosen]
        ax.scatter(xs, [c[1] for c in chosen], marker="*", s=160, color="black", zorder=5, label="deployed δ (picked on val), test")
    floor_lines(ax, floors)
    ax.set_xlabel("mean MACs per sample, all precisions (M)" if use_macs else "mean exit block")
    ax.set_ylabel(q.axis)
    ax.set_title(text(title), fontsize=10)
    _legend_outside(ax)
    return to_data_uri(fig)


OVERVIEW_MAX_MODELS = 30
_MPL = tuple(int(x) for x in matplotlib.__version__.split(".")[:2] if x.isdigit())


def overview_plot(df: pd.DataFrame, title: str, axis: str) -> tuple[str, list[str]]:
    """Test quality ×100 of every model across all sections: one box (and its points) per model,
    the models with the most sections first, at most :data:`OVERVIEW_MAX_MODELS`. Returns the
    figure and the models left out of it (the caller names them)."""
    d = df.dropna(subset=["accuracy"])
    counts = d.groupby("name")["accuracy"].count().sort_index().sort_values(ascending=False, kind="stable")  # ties: by name
    shown, left = list(counts.index[:OVERVIEW_MAX_MODELS]), list(counts.index[OVERVIEW_MAX_MODELS:])
    _theme()
    fig, ax = plt.subplots(figsize=(7.2, 1.2 + 0.32 * max(len(shown), 1)))
    values = [d.loc[d["name"] == n, "accuracy"].to_numpy() * 100 for n in shown]
    sideways = {"orientation": "horizontal"} if _MPL >= (3, 10) else {"vert": False}
    ax.boxplot(values, **sideways, whis=(0, 100), widths=0.6, showfliers=False, patch_artist=True,
               boxprops={"facecolor": "#dce6f2"}, medianprops={"color": "black"})
    for k, v in enumerate(values):
        jitter = ((pd.Series(range(len(v))) * 0.6180339887) % 1 - 0.5).to_numpy() * 0.35
        ax.scatter(v, k + 1 + jitter, s=6, color="#1f4e79", alpha=0.5, zorder=3, linewidths=0)
    ax.set_yticks(range(1, len(shown) + 1), [f"{text(n)} ({counts[n]})" for n in shown], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(axis)
    ax.set_title(text(title), fontsize=10)
    return to_data_uri(fig), left
