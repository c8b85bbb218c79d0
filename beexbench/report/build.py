"""``build_report``: saved results -> one self-contained HTML file (+ Markdown/CSV tables)."""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from .._io import atomic_write_text
from ..errors import BeexError
from ..results.store import load_records
from ._html import anchor, esc, figure, page, table_html, unavailable
from .aggregate import aggregate, dedupe
from .export import write_tables
from .frame import is_floor, quality_of, records_frame
from .notes import dataset_notes, environment_table, failed_section, floor_warnings, method_notes, target_notes, warnings_section
from .plots import exit_histogram_plot, pareto_plot, tradeoff_plot
from .tables import Table, ablation_table, summary_table

# (cost column, x-axis label, scale to the shown unit, log x, x error-bar columns)
PARETO_AXES = [
    ("size_bits", "model size, total incl. embeddings (KiB)", 1 / 8 / 1024, True, None),
    ("ops", "operations per sample, OPs = FLOPs + BOPs/64 (M)", 1e-6, True, None),
    ("latency_ms", "latency at batch size 1, median (ms)", 1.0, True, ("latency_lo", "latency_hi")),
    ("energy_j", "energy per sample (mJ)", 1e3, True, None),
]
AXIS_NAME = {"size_bits": "size", "ops": "operations", "latency_ms": "latency", "energy_j": "energy"}


def default_tables_dir(out: Path) -> Path:
    """Where the tables go unless told otherwise: ``<out stem>-tables/`` next to the HTML."""
    out = Path(out)
    return out.with_name(out.stem + "-tables")


def _spread(g: pd.DataFrame, one_seed: str) -> str:
    multi, single = (g["n_seeds"] > 1).any(), (g["n_seeds"] == 1).any()
    if multi and single:
        return f"± std over seeds where there are several, else the {one_seed}"
    return "± std over seeds" if multi else one_seed


def _floors(g: pd.DataFrame) -> tuple[list[tuple[str, float]], str]:
    """The reference floors of a group as ``(name, value ×100)`` lines, and the caption sentence."""
    rows = g[is_floor(g)]
    lines = sorted(((str(r.label), float(r.accuracy) * 100) for r in rows.itertuples() if pd.notna(r.accuracy)), key=lambda x: x[1])
    if rows.empty:
        return lines, ""
    q = quality_of(g)
    cap = ""
    if lines:
        cap = (f" Dashed horizontal lines: reference floors (test {q.name}: "
               + ", ".join(f"{n} {v:.1f}" for n, v in lines) + "), fitted on the same train split; reference lines, not candidates.")
    undefined = [f"{r.label}: {r.accuracy_undefined or 'no value'}" for r in rows.itertuples() if pd.isna(r.accuracy)]
    if undefined:
        cap += " No line for " + "; ".join(undefined) + "."
    return lines, cap


def _pareto_figures(g: pd.DataFrame, title: str) -> str:
    figs = []
    q = quality_of(g)
    floors, floor_caption = _floors(g)
    g = g[~is_floor(g)]  # the floors are reference lines, not points on the fronts
    for cost, label, scale, log_x, err in PARETO_AXES:
        name = AXIS_NAME[cost]
        have = g.dropna(subset=[cost, "accuracy"])
        missing = sorted(set(g["label"]) - set(have["label"]))
        if have.empty:
            why = "no model in this group has a figure"
            if cost == "energy_j":
                why += f" (provenance: {', '.join(sorted(set(g['energy_provenance'])))}); nothing is plotted rather than zeros."
            figs.append(unavailable(f"{q.name.capitalize()} vs {name} — {title}", why))
            continue
        uri = pareto_plot(g, cost, label, f"{q.name.capitalize()} vs {name} — {title}", scale=scale, log_x=log_x, err=err,
                          floors=floors)
        bars = f"Error bars: {q.name} " + _spread(g, q.interval)
        if err:
            bars += "; latency " + _spread(g, "bootstrap 95% interval of the median")
        cap = f"Non-dominated models are ringed and joined by the dashed front. {bars}."
        if cost == "energy_j":
            cap += " Provenance: " + "; ".join(f"{r.label}: {r.energy_provenance}" for r in have.itertuples()) + "."
        if missing:
            cap += f" Not plotted ({name} unavailable): {', '.join(missing)}."
        cap += floor_caption
        figs.append(figure(uri, f"{q.name} vs {name}, {title}", cap))
    return f'<div class="figs">{"".join(figs)}</div>'


def _exit_figures(g: pd.DataFrame, title: str) -> str:
    floors, floor_caption = _floors(g)
    ee = g[g["n_blocks"].notna() & ~is_floor(g)]
    figs = []
    hist = exit_histogram_plot(ee, f"Exit histogram (test split) — {title}")
    if hist:
        figs.append(figure(hist, f"exit histogram, {title}", "Share of test samples that leave at each exit block "
                           "(summed over seeds). Models without early exits are absent."))
    curve = tradeoff_plot(ee, f"δ trade-off — {title}", floors=floors)
    if curve:
        figs.append(figure(curve, f"delta trade-off, {title}",
                           f"{quality_of(ee).name.capitalize()} against mean MACs per sample as the exit threshold δ is swept: dashed = validation "
                           "split (where δ is calibrated), solid = test split (reported for reference only, never used "
                           "to choose δ). The star marks the deployed δ on the test curve." + floor_caption))
    if not figs:
        return '<p class="note">No model in this group records exit statistics.</p>'
    return f'<div class="figs">{"".join(figs)}</div>'


def build_report(results: list[Path] | Path, out: Path, *, tables_dir: Path | None = None) -> Path:
    """Read every run under ``results`` and write one self-contained HTML file to ``out``, plus
    its tables as Markdown and CSV in ``tables_dir`` (default :func:`default_tables_dir`)."""
    roots = [Path(results)] if isinstance(results, (str, Path)) else [Path(p) for p in results]
    records = load_records(roots)
    ok = [r for r in records if r.status == "ok"]
    if not ok:
        raise BeexError(f"no finished results under {', '.join(map(str, roots))}: run `beexbench run` first")
    cells, duplicates, other_config = dedupe(records_frame(ok))
    agg = aggregate(cells)

    tables: list[Table] = []
    sections, toc, all_floor_warnings = [], [], []
    for i, ((task, target), g) in enumerate(agg.groupby(["task", "target_label"], sort=True)):
        title = f"{task} on {target}"
        sid = anchor(i, task, target)
        toc.append(f'<li><a href="#{sid}">{esc(title)}</a></li>')
        summary = summary_table(g)
        ablation = ablation_table(g)
        tables += [summary] + ([ablation] if ablation else [])
        emulated = ('<p class="warn">Emulated target: latency and energy are the host\'s, with the target\'s thread count.</p>'
                    if g["emulated"].any() else "")
        for below in floor_warnings(g, title):
            all_floor_warnings.append(below)
            emulated += f'<p class="warn" data-floor-warning>{esc(below)}</p>'
        sections.append(
            f'<section id="{sid}"><h2>{esc(title)}</h2>{emulated}<h3>Summary</h3>{table_html(summary)}'
            f"<h3>Pareto fronts</h3>{_pareto_figures(g, title)}"
            + (f"<h3>Ablations</h3>{table_html(ablation)}" if ablation else "")
            + f"<h3>Early exits</h3>{_exit_figures(g, title)}</section>"
        )

    tables_dir = Path(tables_dir) if tables_dir is not None else default_tables_dir(out)
    write_tables(tables, tables_dir)

    stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
    n_runs = cells["run_id"].nunique()
    body = (
        f"<h1>beexbench report</h1><p class=\"note\">{len(cells)} result(s) ({len(agg)} model × task × target rows) "
        f"from {n_runs} run(s), generated {esc(stamp)} from saved results only. Tables are also exported as "
        f"Markdown and CSV to <code>{esc(tables_dir.name)}/</code> next to this file.</p>"
        f'<nav><ul>{"".join(toc)}<li><a href="#s-notes">Method and conventions</a></li>'
        f'<li><a href="#s-environment">Environment</a></li><li><a href="#s-warnings">Warnings</a></li></ul></nav>'
        + "".join(sections)
        + f'<section id="s-notes"><h2>Method and conventions</h2>{method_notes(ok)}'
        f"<h3>Datasets</h3>{dataset_notes(ok)}<h3>Targets</h3>{target_notes(ok)}</section>"
        f'<section id="s-environment"><h2>Environment</h2>{environment_table(ok)}</section>'
        f'<section id="s-warnings"><h2>Warnings</h2>{warnings_section(ok, duplicates, all_floor_warnings, other_config=other_config)}</section>'
        + failed_section(records)
    )
    out = Path(out)
    atomic_write_text(out, page("beexbench report", body))
    return out
