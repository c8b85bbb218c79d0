"""One report section per (task, target): its aggregated rows, tables, floor warnings and (for the
sections that get them) its figures. Each section depends only on its own cells, so
:mod:`beexbench.report.parallel` can build them in worker processes."""
from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from ._html import anchor, esc, figure, table_html, unavailable
from .aggregate import aggregate
from .frame import is_floor, quality_of
from .dominance import front_caption, significant_front
from .floors import FLOOR_POINTS, floor_warnings
from .significance import Test
from .size_ladder import size_ladder
from .plots import exit_histogram_plot, pareto_axes, pareto_plot, tradeoff_plot
from .tables import Table, ablation_table, summary_table
from .speed_ladder import ladder_html
from .static_depth import static_depth_block
from .scenarios import scenarios_block

# the columns of the aggregated rows that the across-section summary figure needs
OVERVIEW_COLUMNS = ["task", "target_label", "label", "model", "role", "metric", "accuracy"]


@dataclass
class SectionJob:
    """What a worker needs to build one section: its place, its cells, whether to draw figures,
    and the sentence to print instead of figures when it does not."""

    index: int
    task: str
    target: str
    cells: pd.DataFrame
    figures: bool
    no_figures_note: str = ""
    tests: dict = field(default_factory=dict)  # its pairwise statements' adjusted tests (report.family)


@dataclass
class Section:
    index: int
    anchor: str
    title: str
    html: str
    tables: list[Table] = field(default_factory=list)
    floor_warnings: list[str] = field(default_factory=list)
    n_rows: int = 0
    overview: pd.DataFrame | None = None  # OVERVIEW_COLUMNS of its aggregated rows
    figures: bool = True  # drawn with its figures


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


def pareto_figures(g: pd.DataFrame, title: str, cells: pd.DataFrame | None = None) -> str:
    """One Pareto figure per declared cost; with the group's per-seed ``cells``, a point is
    dominated only where the dominance is distinguishable (:mod:`beexbench.report.dominance`)."""
    figs = []
    q = quality_of(g)
    floors, floor_caption = _floors(g)
    floor_rows, g = g[is_floor(g)], g[~is_floor(g)]  # the floors: lines and marked points, never on the fronts
    for cost, name, label, scale, log_x, err in pareto_axes():  # declared in beexbench.results.columns
        have = g.dropna(subset=[cost, "accuracy"])
        missing = sorted(set(g["label"]) - set(have["label"]))
        if have.empty:
            why = "no model in this group has a figure"
            if cost == "energy_j":
                why += f" (provenance: {', '.join(sorted(set(g['energy_provenance'])))}); nothing is plotted rather than zeros."
            figs.append(unavailable(f"{q.name.capitalize()} vs {name} — {title}", why))
            continue
        front, kept = significant_front(g, cells, cost, name)
        uri = pareto_plot(g, cost, label, f"{q.name.capitalize()} vs {name} — {title}", scale=scale, log_x=log_x, err=err,
                          floors=floors, floor_rows=floor_rows, front=front)
        bars = f"Error bars: {q.name} " + _spread(g, q.interval)
        if err:
            bars += "; latency " + _spread(g, "bootstrap 95% interval of the median")
        cap = (front_caption(kept) if cells is not None else
               "Non-dominated models (geometric: no test of whether a dominance is distinguishable) are ringed and joined "
               "by the dashed front.") + f" {bars}."
        if cost == "energy_j":
            cap += " Provenance: " + "; ".join(f"{r.label}: {r.energy_provenance}" for r in have.itertuples()) + "."
        if missing:
            cap += f" Not plotted ({name} unavailable): {', '.join(missing)}."
        cap += floor_caption + (FLOOR_POINTS if floors else "")
        figs.append(figure(uri, f"{q.name} vs {name}, {title}", cap))
    return f'<div class="figs">{"".join(figs)}</div>'


def exit_figures(g: pd.DataFrame, title: str) -> str:
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


def headline_html(tests: dict) -> str:
    """Each subject model against the full-precision reference, with its tests ("" without one)."""
    lines = [t for k, t in tests.items() if k[0] == "headline" and isinstance(t, Test)]
    if not lines:
        return ""
    return ("<h3>Subject vs full-precision reference</h3>"
            + "".join(f'<p class="verdict" data-headline>{esc(t.sentence())}.</p>' for t in lines))


def build_section(job: SectionJob) -> Section:
    """The HTML of one (task, target) section, its tables and its floor warnings."""
    g = aggregate(job.cells)
    title = f"{job.task} on {job.target}"
    sid = anchor(job.index, job.task, job.target)
    cells = job.cells if "paired" in job.cells else None  # per-seed rows with their per-sample data
    summary = summary_table(g, cells)
    ablation = ablation_table(g)
    sizes = size_ladder(g)  # where the size reduction comes from (issue 28); None without two rungs
    warnings = floor_warnings(g, title, job.tests) if is_floor(g).any() else []  # no floor, no verdict
    head = ('<p class="warn">Emulated target: latency and energy are the host\'s, with the target\'s thread count.</p>'
            if g["emulated"].any() else "")
    head += "".join(f'<p class="warn" data-floor-warning>{esc(w)}</p>' for w in warnings)
    if job.figures:
        pareto, exits = pareto_figures(g, title, cells), exit_figures(g, title)
    else:
        pareto = f'<p class="note" data-no-figures>{esc(job.no_figures_note)}</p>'
        exits = '<p class="note" data-no-figures>No exit figures for this section either (see above).</p>'
    ladder = ladder_html(g, title, figures=job.figures, tests=job.tests)  # beexbench/report/speed_ladder.py
    html = (f'<section id="{sid}"><h2>{esc(title)}</h2>{head}<h3>Summary</h3>{table_html(summary)}'
            + headline_html(job.tests) + f"<h3>Pareto fronts</h3>{pareto}"
            + (f"<h3>Ablations</h3>{table_html(ablation)}" if ablation else "")
            + (f"<h3>Size ladder</h3>{table_html(sizes)}" if sizes else "")
            + f"<h3>Early exits</h3>{exits}{static_depth_block(g, title, job.figures, job.tests)}"
            + (f"<h3>Where the speed-up comes from</h3>{ladder}" if ladder else "")
            + scenarios_block(g, title, job.figures) + "</section>")
    return Section(job.index, sid, title, html, [summary] + [t for t in (ablation, sizes) if t], warnings, len(g),
                   g[OVERVIEW_COLUMNS].copy(), job.figures)


def build_sections(jobs: list[SectionJob]) -> list[Section]:
    """A worker's share: several sections, in the order given."""
    return [build_section(job) for job in jobs]
