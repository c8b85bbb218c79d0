"""``build_report``: saved results -> one self-contained HTML file (+ Markdown/CSV tables)."""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from .._io import atomic_write_text
from ..errors import BeexError
from ..progress import NULL_PROGRESS, Progress
from ..results.store import unique_runs
from ._html import esc, figure, page
from .aggregate import dedupe
from .export import write_tables
from .family import paired_frame, report_family
from .frame import is_floor
from .guard import check_destination
from .notes import dataset_notes, environment_table, failed_section, method_notes, target_notes, warnings_section
from .parallel import check_jobs, choose_workers, run_sections
from .sections import Section, SectionJob
from .roofline import roofline_html

# Sections (task × target) that get figures unless told otherwise; the rest get tables and a place
# in the across-section figure. Five figures cost about a second of CPU per section.
DEFAULT_FIGURES_FOR = 20
MAX_FIGURES_FOR = 1_000_000


def default_tables_dir(out: Path) -> Path:
    """Where the tables go unless told otherwise: ``<out stem>-tables/`` next to the HTML."""
    out = Path(out)
    return out.with_name(out.stem + "-tables")


def check_figures_for(n) -> None:
    if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= MAX_FIGURES_FOR:
        raise BeexError(f"--figures-for {n!r}: must be a whole number from 0 to {MAX_FIGURES_FOR:,} "
                        f"(sections drawn with figures; default {DEFAULT_FIGURES_FOR})")


def _jobs(cells: pd.DataFrame, figures_for: int, family: dict | None = None) -> list[SectionJob]:
    groups = list(cells.groupby(["task", "target_label"], sort=True))
    n = len(groups)
    note = (f"No figures for this section: this report draws figures for the first {figures_for} of its {n} "
            f"sections (--figures-for {figures_for}). Its models are in the summary table above and in the "
            "across-section figure at the top; rerun `beexbench report` with a larger --figures-for to draw them.")
    family = family or {}
    return [SectionJob(i, str(task), str(target), g, i < figures_for, note, family.get((str(task), str(target)), {}))
            for i, ((task, target), g) in enumerate(groups)]


def _figures_note(sections: list[Section], figures_for: int) -> str:
    drawn = sum(s.figures for s in sections)
    if drawn == len(sections):
        return ""
    return (f'<p class="note" data-figures="{drawn}">Figures (Pareto fronts, exit histograms, δ trade-offs) are drawn for '
            f"the first {drawn} of {len(sections)} sections (--figures-for {figures_for}); the other "
            f"{len(sections) - drawn}, marked “tables only” in the list below, have their summary and ablation tables "
            "and warnings, and every model of every section is in the across-section figure.</p>")


def _overview(sections: list[Section]) -> str:
    """The across-section figure: drawn when some section has no figures of its own."""
    from .frame import QUALITIES
    from .plots import overview_plot

    d = pd.concat([s.overview for s in sections if s.overview is not None], ignore_index=True)
    floor = is_floor(d)
    d["name"] = d["label"].astype(str) + floor.map({True: " — reference floor", False: ""})
    metrics = set(d["metric"].dropna()) or {"accuracy"}
    axis = (QUALITIES[metrics.pop()].axis if len(metrics) == 1 and next(iter(metrics)) in QUALITIES
            else "accuracy (%) or Pearson r ×100, as the task's metric")
    uri, left = overview_plot(d, f"Test quality across all {len(sections)} sections", "test " + axis)
    missing = int(d["accuracy"].isna().sum())
    cap = (f"One box per model: its test {axis} in every section (task × target) it ran in, whiskers at the extremes, "
           "one dot per section; the number of sections after each name.")
    if left:
        cap += f" {len(left)} further model(s) with fewer sections are not drawn here, only in their sections' tables: {', '.join(left)}."
    if missing:
        cap += f" {missing} row(s) have no value (undefined or missing) and are not drawn."
    return f'<section id="s-overview"><h2>Across sections</h2><div class="figs">{figure(uri, "test quality across sections", cap)}</div></section>'


def build_report(results: list[Path] | Path, out: Path, *, tables_dir: Path | None = None,
                 figures_for: int = DEFAULT_FIGURES_FOR, jobs: int | None = None,
                 progress: Progress = NULL_PROGRESS) -> Path:
    """Read every run under ``results`` and write one self-contained HTML file to ``out``, plus
    its tables as Markdown and CSV in ``tables_dir`` (default :func:`default_tables_dir`).

    ``figures_for``: how many (task, target) sections, in the report's order, get their figures;
    the others get tables and a place in one across-section figure, and the report says which.
    ``jobs``: worker processes for the sections (default: the usable cores when the work is worth
    it). ``progress``: told about the sections as they are built."""
    roots = [Path(results)] if isinstance(results, (str, Path)) else [Path(p) for p in results]
    out = Path(out)
    tables_dir = Path(tables_dir) if tables_dir is not None else default_tables_dir(out)
    check_figures_for(figures_for)
    check_jobs(jobs)
    runs = unique_runs(roots)  # a --results that is a file, missing or holds no run: one line, before any progress
    check_destination(out, roots, "report", "--out")
    check_destination(tables_dir, roots, "tables", "--tables" if tables_dir != default_tables_dir(out) else "the tables folder")
    with progress.task("report: reading results"):
        records = [record for run in runs for record in run.cells()]
    ok = [r for r in records if r.status == "ok"]
    if not ok:
        raise BeexError(f"no finished results under {', '.join(map(str, roots))}: run `beexbench run` first")
    cells, duplicates, other_config = dedupe(paired_frame(ok))  # with each cell's per-sample data
    family = report_family(cells)  # every pairwise statement, Holm-adjusted together (one family)
    section_jobs = _jobs(cells, figures_for, family)
    sections = run_sections(section_jobs, choose_workers(section_jobs, jobs), progress)

    tables = [t for s in sections for t in s.tables]
    all_floor_warnings = [w for s in sections for w in s.floor_warnings]
    bare = not all(s.figures for s in sections)
    overview_link = '<li><a href="#s-overview">Across sections</a></li>' if bare else ""
    toc = [f'<li><a href="#{s.anchor}">{esc(s.title)}</a>{"" if s.figures else " (tables only)"}</li>' for s in sections]
    write_tables(tables, tables_dir)

    stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
    n_runs = cells["run_id"].nunique()
    n_rows = sum(s.n_rows for s in sections)
    body = (
        f"<h1>beexbench report</h1><p class=\"note\">{len(cells)} result(s) ({n_rows} model × task × target rows) "
        f"from {n_runs} run(s), generated {esc(stamp)} from saved results only. Tables are also exported as "
        f"Markdown and CSV to <code>{esc(tables_dir.name)}/</code> next to this file.</p>"
        + _figures_note(sections, figures_for)
        + f'<nav><ul>{overview_link}{"".join(toc)}'
        f'<li><a href="#s-notes">Method and conventions</a></li>'
        f'<li><a href="#s-environment">Environment</a></li><li><a href="#s-warnings">Warnings</a></li></ul></nav>'
        + (_overview(sections) if bare else "")
        + "".join(s.html for s in sections)
        + f'<section id="s-notes"><h2>Method and conventions</h2>{method_notes(ok)}'
        f"<h3>Datasets</h3>{dataset_notes(ok)}<h3>Targets</h3>{target_notes(ok)}</section>"
        f'<section id="s-environment"><h2>Environment</h2>{environment_table(ok)}{roofline_html(ok)}</section>'
        f'<section id="s-warnings"><h2>Warnings</h2>{warnings_section(ok, duplicates, all_floor_warnings, other_config=other_config)}</section>'
        + failed_section(records)
    )
    atomic_write_text(out, page("beexbench report", body))
    return out
