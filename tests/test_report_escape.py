"""Report exports escape what they carry (issue 15): hostile model, task and target names and
descriptions go through the report's table builders into Markdown, CSV and HTML."""
from __future__ import annotations

import csv
import io
import re

import pytest

from beexbench.report._html import table_html
from beexbench.report.aggregate import aggregate, dedupe
from beexbench.report.export import csv_cell, markdown, md_cell, write_tables
from beexbench.report.frame import records_frame
from beexbench.report.tables import ablation_table, summary_table
from test_report import make_record

SCRIPT = "<script>alert(1)</script>"
FORMULAS = ['=HYPERLINK("http://evil.example","x")', "+cmd|' /C calc'!A0", "-2+3", "@SUM(A1:A9)"]
VARIANT = f"beexformer-{SCRIPT}|x\ny"  # an ablation variant: a pipe and a line break in its name


@pytest.fixture(scope="module")
def tables():
    task, target = f"t{SCRIPT}|\r\nnext", f"cpu{SCRIPT}"
    kw = dict(task=task, target=target, cpu=f"host\n{SCRIPT}")
    records = [make_record("beexformer", acc=0.80, **kw),
               make_record(VARIANT, acc=0.70, description=f"[click](javascript:alert(1)) `code` {SCRIPT}", **kw)]
    records += [make_record(name, acc=0.6 + i / 100, **kw) for i, name in enumerate(FORMULAS)]
    agg = aggregate(dedupe(records_frame(records))[0])
    ((_, group),) = agg.groupby(["task", "target_label"])
    return [summary_table(group), ablation_table(group)]


def md_rows(md: str) -> list[list[str]]:
    """Table rows of a Markdown document, split on the pipes that are not escaped."""
    return [re.split(r"(?<!\\)\|", line)[1:-1] for line in md.splitlines() if line.startswith("|")]


def test_md_cell_shows_text_literally_on_one_line():
    assert md_cell(SCRIPT) == "&lt;script&gt;alert(1)&lt;/script&gt;"
    assert md_cell("a|b") == "a\\|b" and md_cell("a\\|b") == "a\\\\\\|b"
    assert md_cell("one\ntwo\r\nthree\rfour\u2028five") == "one two three four five"
    assert "](" not in md_cell("[x](javascript:alert(1))") and md_cell("`x`") == "\\`x\\`"
    assert md_cell("83.0 [79.0, 87.0] & more") == "83.0 [79.0, 87.0] &amp; more"


def test_markdown_tables_keep_their_shape_and_carry_no_html(tables):
    md = markdown(tables)
    assert "<script" not in md and "](" not in md
    rows = md_rows(md)
    widths = {len(t.columns) for t in tables}
    assert {len(r) for r in rows} <= widths  # no name broke a row or added a column
    assert len(rows) == sum(len(t.rows) + 2 for t in tables)  # header + rule + rows, nothing split
    assert any("beexformer-&lt;script&gt;alert(1)&lt;/script&gt;\\|x y" in c for r in rows for c in r)
    headings = [line for line in md.splitlines() if line.startswith("## ")]
    assert len(headings) == len(tables) and all("&lt;script&gt;" in h for h in headings)


@pytest.mark.parametrize("value, expected", [
    ("=1+1", "'=1+1"), ("+1", "'+1"), ("-1", "'-1"), ("@x", "'@x"), ("\tx", "'\tx"), ("\rx", "'\rx"),
    ("beexformer", "beexformer"), ("", ""), (-1.5, -1.5), (3, 3), (None, None), (True, True),
])
def test_csv_cell_neutralises_formulas_only(value, expected):
    assert csv_cell(value) == expected


def test_csv_exports_neutralise_formulas_and_keep_numbers(tables, tmp_path):
    write_tables(tables, tmp_path)
    summary = list(csv.DictReader(io.StringIO((tmp_path / "summary.csv").read_text())))
    models = {r["model"] for r in summary}
    assert {"'" + f for f in FORMULAS} <= models and not models & set(FORMULAS)
    assert all(not r["model"].startswith(("=", "+", "-", "@")) for r in summary)
    assert any(float(r["accuracy"]) == pytest.approx(0.61) for r in summary)  # numbers stay numbers
    ablation = list(csv.DictReader(io.StringIO((tmp_path / "ablation.csv").read_text())))
    deltas = [r["delta_accuracy_pp"] for r in ablation]
    assert any(d.startswith("-") and float(d) == pytest.approx(-10.0) for d in deltas)  # a negative Δ is a number
    assert VARIANT in {r["model"] for r in ablation}  # quoted by the CSV writer, intact in the cell


def test_html_tables_escape_names(tables):
    page = "".join(table_html(t) for t in tables)
    assert "<script" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert 'javascript:alert(1)' in page and "<a " not in page  # shown as text, never a link


def test_results_export_neutralises_formulas(tmp_path):
    """`beexbench results export` writes the same guarded CSV as the report's tables."""
    from beexbench.report.export import export_cells as export
    from beexbench.results.store import RunDir

    run = RunDir.under(tmp_path / "results", "run-a")
    for i, name in enumerate(FORMULAS):
        run.write_cell(make_record(name, acc=0.6 + i / 100))
    rows = list(csv.DictReader(io.StringIO(export([tmp_path / "results"], tmp_path / "all.csv").read_text())))
    assert {r["model"] for r in rows} == {"'" + f for f in FORMULAS}
    assert sorted(float(r["accuracy"]) for r in rows) == pytest.approx([0.6, 0.61, 0.62, 0.63])
