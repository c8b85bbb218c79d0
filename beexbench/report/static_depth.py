"""The report's "static depth" block of a (task, target) section: for every early-exit model, its
static curve ("always exit at block k": test score with interval, mean MACs, batch-1 latency)
beside its δ sweep on test with each calibration objective's δ marked, and the verdict in words
(``metrics.static_depth``, :mod:`beexbench.results.static_depth`)."""
from __future__ import annotations

import math

import pandas as pd

from ._html import esc, figure, table_html
from .frame import is_floor, quality_of
from .tables import Table

OBJECTIVE_NAMES = {"cheapest-within-tolerance": "cheapest within tolerance", "accuracy-seeking": "accuracy-seeking"}


def _score(metric: str, v, lo=None, hi=None) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    scale, spec = (100, ".1f") if metric == "accuracy" else (1, ".3f")
    out = format(v * scale, spec)
    if lo is not None and hi is not None:
        out += f" [{format(lo * scale, spec)}, {format(hi * scale, spec)}]"
    return out


def static_table(label: str, seed, s: dict) -> Table:
    """One model's static curve, its rule's point and each objective's δ on the test sweep."""
    metric = s["metric"]
    rows, classes = [], []
    for p in s["points"]:
        latency = f"{p['latency_ms']:.3g}" if p["latency_ms"] is not None else "unavailable"
        rows.append([f"static depth {p['k']}", _score(metric, p["accuracy"], p["accuracy_lo"], p["accuracy_hi"]),
                     f"{p['mean_macs'] / 1e6:.3g}", latency, p["latency_note"] if p["latency_ms"] is None else ""])
        classes.append("")
    rows.append(["deployed rule", _score(metric, s["rule_accuracy"]), f"{s['rule_mean_macs'] / 1e6:.3g}",
                 "(headline latency)", f"modal block {s['modal_block']} ({100 * s['modal_share']:.1f}%), exit entropy "
                 f"{s['exit_entropy_bits']:.2f} bits"])
    classes.append("hl")
    for m in s.get("calibration", []):
        macs = f"{m['mean_macs'] / 1e6:.3g}" if m.get("mean_macs") is not None else "—"
        rows.append([f"δ = {m['value']:g} ({OBJECTIVE_NAMES.get(m['objective'], m['objective'])})",
                     _score(metric, m["accuracy"]), macs, "—",
                     f"validation {_score(metric, m['val_accuracy'])}" + ("; deployed" if m["deployed"] else "")])
        classes.append("")
    notes = [f"{label} (seed {seed}): {s['verdict_text']}"]
    budgets = {p["latency_note"] for p in s["points"] if p["latency_ms"] is not None}
    notes += [f"static latency: {b}" for b in sorted(budgets)]
    quality = "accuracy % [95% Wilson]" if metric == "accuracy" else "Pearson r [95% Fisher z]"
    return Table("static-depth", "", "", ["", f"test {quality}", "mean MACs (M)", "latency ms, batch 1, median", "note"],
                 rows, pd.DataFrame(), notes, classes)


def _curve_figure(models: list[tuple[str, dict, list]], metric: str, title: str) -> str | None:
    from .plots import plt, text, to_data_uri, _legend_outside, _palette, _theme

    if not models:
        return None
    _theme()
    scale = 100 if metric == "accuracy" else 1
    colours = _palette([m[0] for m in models])
    fig, ax = plt.subplots(figsize=(6.4, 3.9))
    for label, s, sweep in models:
        c = colours[label]
        pts = sorted((p["mean_macs"] / 1e6, p["accuracy"] * scale, p["k"]) for p in s["points"] if p["accuracy"] is not None)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "-o", color=c, lw=1.6, ms=5, label=f"{text(label)} static depth k")
        for x, y, k in pts:
            ax.annotate(str(k), (x, y), xytext=(3, -9), textcoords="offset points", fontsize=7, color=c)
        d = sorted((r["mean_macs"] / 1e6, r[metric] * scale) for r in sweep if r.get("mean_macs") is not None)
        if d:
            ax.plot([x for x, _ in d], [y for _, y in d], ":", color=c, lw=1.2, label=f"{text(label)} δ sweep (test)")
        ax.scatter([s["rule_mean_macs"] / 1e6], [(s["rule_accuracy"] or math.nan) * scale], marker="*", s=170,
                   color=c, edgecolors="black", zorder=5, label=f"{text(label)} deployed δ ({s['verdict']})")
        other = [m for m in s.get("calibration", []) if not m["deployed"] and m.get("mean_macs") is not None]
        if other:
            ax.scatter([m["mean_macs"] / 1e6 for m in other], [m["accuracy"] * scale for m in other], marker="D", s=45,
                       facecolors="none", edgecolors=c, zorder=5, label=f"{text(label)} other objective's δ")
    ax.set_xlabel("mean MACs per sample, all precisions (M)")
    ax.set_ylabel("test " + ("accuracy (%)" if metric == "accuracy" else "Pearson r"))
    ax.set_title(text(title), fontsize=10)
    _legend_outside(ax)
    return to_data_uri(fig)


def _with_tests(text: str, label: str, seed, tests: dict) -> str:
    """A verdict with its statements' tests (the report's family: interval, p, Holm p, verdict)."""
    found = [tests[k] for k in (("static", label, seed, "compared"), ("static", label, seed, "cheaper")) if k in tests]
    return text + "".join(f" [{t.what.split(', ', 1)[-1]}: {t.shown()}; {t.method}; {t.p_text()}: {t.verdict}]" for t in found)


def static_depth_block(g: pd.DataFrame, title: str, figures: bool, tests: dict | None = None) -> str:
    """The HTML of a section's static-depth block ("" when no model records one); ``tests``: the
    section's statements (:mod:`beexbench.report.family`), shown after each verdict."""
    if "static_depth" not in g:
        return ""
    rows = g[~is_floor(g)]
    tables, models, verdicts = [], [], []
    for r in rows.itertuples():
        per_seed = r.static_depth if isinstance(r.static_depth, list) else []
        if not per_seed:
            continue
        seed, s = per_seed[0]
        tables.append(table_html(static_table(str(r.label), seed, s)))
        verdicts += [_with_tests(f"{r.label} (seed {sd}): {x['verdict_text']}", str(r.label), sd, tests or {})
                     for sd, x in per_seed]
        sweep = next((sw for sd, sw in (r.test_sweep or []) if sd == seed), [])
        models.append((str(r.label), s, sweep))
    if not models:
        return ""
    out = "".join(f'<p class="verdict" data-static-verdict>{esc(v)}</p>' for v in verdicts)
    if figures:
        uri = _curve_figure(models, quality_of(rows).key, f"Static depth vs δ — {title}")
        if uri:
            out += figure(uri, f"static depth vs delta, {title}", (
                "Solid: every test sample exits at block k (the same network and heads, k marked); dotted: the δ sweep "
                "on test; star: the deployed δ (picked on validation); open diamond: the other calibration objective's δ."))
    return "<h3>Static depth</h3>" + out + "".join(tables)
