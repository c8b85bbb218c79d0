"""The report's "deployment scenarios" block of a (task, target) section (``metrics.scenarios``,
:mod:`beexbench.results.scenarios`): one table (SingleStream p90, Offline samples/s with its batch
size, Server QPS at the p99 bound), every INVALID result greyed with its reasons beside it (never
mixed unmarked with the VALID ones), and the Server scenario's latency-vs-QPS curve (its bisection
probes: p99 against the target QPS, the bound dashed, INVALID probes hollow)."""
from __future__ import annotations

import pandas as pd

from ._html import esc, figure
from .frame import is_floor

GREY = "color:#888;background:#f2f2f2"
COLUMNS = ("model (seed)", "generator", "SingleStream p90 (ms)", "Offline samples/s (batch)", "Server QPS at p99 bound",
           "validity and reasons")


def _fmt(r: dict | None) -> str:
    if r is None:
        return "—"
    if r["value"] is None:
        return "none found"
    if r["scenario"] == "single-stream":
        return f"{r['value']:.3g}"
    if r["scenario"] == "offline":
        return f"{r['value']:.4g} (bs {r['batch_size']})"
    return f"{r['value']:.4g} (p99 ≤ {r['bound_ms']:.3g} ms)"


def scenario_rows(label: str, seed, s: dict) -> list[tuple[list[str], bool]]:
    """One row per validity: the VALID results of a cell, then its INVALID ones (greyed)."""
    by = {r["scenario"]: r for r in s["results"]}
    out = []
    for validity in ("VALID", "INVALID"):
        part = {k: r for k, r in by.items() if r["validity"] == validity}
        if not part:
            continue
        why = "; ".join(f"{k}: {x}" for k, r in part.items() for x in r["reasons"])
        out.append(([f"{label} (seed {seed})", s["generator"], _fmt(part.get("single-stream")), _fmt(part.get("offline")),
                     _fmt(part.get("server")), validity + (f" — {why}" if why else "")], validity == "INVALID"))
    return out


def scenario_table_html(rows: list[tuple[list[str], bool]], notes: list[str]) -> str:
    head = "".join(f'<th class="{"l" if i in (0, 1, 5) else ""}">{esc(c)}</th>' for i, c in enumerate(COLUMNS))
    body = "".join(
        f'<tr data-validity="{"INVALID" if grey else "VALID"}"{f" style={chr(34)}{GREY}{chr(34)}" if grey else ""}>'
        + "".join(f'<td class="{"l" if i in (0, 1, 5) else ""}">{esc(c)}</td>' for i, c in enumerate(cells)) + "</tr>"
        for cells, grey in rows)
    cap = "".join(f"<li>{esc(n)}</li>" for n in notes)
    return (f'<table data-kind="scenarios"><thead><tr>{head}</tr></thead><tbody>{body}</tbody>'
            f'<caption class="note" style="caption-side:bottom;text-align:left"><ul class="tight">{cap}</ul></caption></table>')


def server_curve(models: list[tuple[str, dict]], title: str) -> str | None:
    """p99 latency against target QPS for every Server probe, per model; the bound dashed."""
    from .plots import _legend_outside, _palette, _theme, plt, text, to_data_uri

    curves = [(label, r) for label, r in models if r.get("search")]
    if not curves:
        return None
    _theme()
    colours = _palette([c[0] for c in curves])
    fig, ax = plt.subplots(figsize=(6.4, 3.9))
    for label, r in curves:
        c = colours[label]
        pts = sorted((p["target_qps"], p["p99_ms"], p["validity"]) for p in r["search"] if p["p99_ms"] is not None)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "-", color=c, lw=1.2, label=f"{text(label)} p99")
        for valid in (True, False):
            sel = [p for p in pts if (p[2] == "VALID") == valid]
            ax.scatter([p[0] for p in sel], [p[1] for p in sel], s=30, color=c if valid else "none", edgecolors=c, zorder=5)
        ax.axhline(r["bound_ms"], color=c, ls="--", lw=0.9)
    ax.set_xlabel("target QPS (Poisson arrivals)")
    ax.set_ylabel("p99 latency (ms)")
    ax.set_yscale("log")
    ax.set_title(text(title), fontsize=10)
    _legend_outside(ax)
    return to_data_uri(fig)


def scenarios_block(g: pd.DataFrame, title: str, figures: bool) -> str:
    """The HTML of a section's scenario block ("" when no model records scenarios)."""
    if "scenarios" not in g:
        return ""
    rows, notes, servers, generators = [], [], [], set()
    for r in g[~is_floor(g)].itertuples():
        per_seed = r.scenarios if isinstance(r.scenarios, list) else []
        for seed, s in per_seed:
            rows += scenario_rows(str(r.label), seed, s)
            generators.add(s["generator"])
            notes.append(s["note"]) if s["note"] not in notes else None
        if per_seed:
            server = next((x for x in per_seed[0][1]["results"] if x["scenario"] == "server"), None)
            if server is not None:
                servers.append((str(r.label), server))
    if not rows:
        return ""
    notes += [f"generator: {gen}" for gen in sorted(generators)]
    notes.append("Greyed rows are INVALID results, with their reasons (LoadGen's and beexbench's own); "
                 "compare only VALID figures.")
    out = "<h3>Deployment scenarios</h3>" + scenario_table_html(rows, notes)
    if figures and servers:
        uri = server_curve(servers, f"Server: p99 latency vs QPS — {title}")
        if uri:
            out += figure(uri, f"server latency vs qps, {title}", (
                "Each point is one probe of the Server bisection (Poisson arrivals at the target QPS, dynamic batching); "
                "filled: LoadGen judged it VALID, hollow: INVALID; dashed: each model's p99 bound."))
    return out
