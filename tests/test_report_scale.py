"""The report on many sections: figures for the first N only (said in the HTML, nothing dropped),
sections built in worker processes with the same result, progress through the progress protocol;
and where the report may not be written (inside a results folder) or read from (a file)."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import pytest

from beexbench.errors import BeexError
from beexbench.report import build_report
from beexbench.report.pareto import pareto_mask
from test_report import _rows, _tables, make_record, write_run

TASKS = ["task-a", "task-b", "task-c"]


def three_tasks(root: Path) -> Path:
    recs = []
    for k, task in enumerate(TASKS):
        recs += [make_record("beexformer", task=task, acc=0.70 + 0.05 * k),
                 make_record("fp32", task=task, acc=0.80, total_bits=12_000_000, bits_no_emb=4_000_000)]
    return write_run(root, "run-tasks", recs)


def _sections(html: str) -> dict[str, str]:
    """Section title -> its HTML, for the per-(task, target) sections."""
    out = {}
    for sid, body in re.findall(r'<section id="(s-\d[^"]*)">(.*?)</section>', html, flags=re.S):
        out[re.sub(r"<[^>]+>", "", body.split("</h2>")[0])] = body
    return out


def _command() -> list[str]:
    script = Path(sys.executable).with_name("beexbench")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "beexbench.cli"]


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*_command(), *args], capture_output=True, text=True, timeout=300)


# --------------------------------------------------------------------------- figures for the first N


def test_figures_for_the_first_n_sections_the_rest_said_and_summarised(tmp_path):
    out = build_report(three_tasks(tmp_path / "res"), tmp_path / "r.html", figures_for=1, jobs=1)
    html = out.read_text()
    sections = _sections(html)
    assert [t.split(" on ")[0] for t in sections] == TASKS
    first, *rest = sections.values()
    assert first.count("<img ") == 5 and "data-no-figures" not in first  # size, ops, latency fronts (energy: a box) + 2 exit figures
    for body in rest:  # tables, no figures, and the reason with the option to change it
        assert "<img " not in body and "data-no-figures" in body and "--figures-for 1" in body
        assert {r[0] for r in _rows(dict(_tables(body))["summary"])} == {"beexformer", "fp32"}
    assert 'data-figures="1"' in html and "the first 1 of 3 sections" in html
    toc = re.search(r"<nav>(.*?)</nav>", html, flags=re.S).group(1)
    assert toc.count("(tables only)") == 2 and "task-a on" in toc.split("(tables only)")[0]
    # one across-section figure with every model, and the number of sections each ran in
    overview = re.search(r'<section id="s-overview">(.*?)</section>', html, flags=re.S).group(1)
    assert overview.count("<img ") == 1 and "every section (task × target) it ran in" in overview


def test_all_sections_drawn_means_no_note_and_no_overview(tmp_path):
    html = build_report(three_tasks(tmp_path / "res"), tmp_path / "r.html", figures_for=3, jobs=1).read_text()
    assert "data-no-figures" not in html and "data-figures=" not in html and 's-overview' not in html
    assert all(body.count("<img ") == 5 for body in _sections(html).values())


def test_worker_processes_build_the_same_report(tmp_path):
    results = three_tasks(tmp_path / "res")
    serial = build_report(results, tmp_path / "one" / "r.html", figures_for=1, jobs=1).read_text()
    parallel = build_report(results, tmp_path / "two" / "r.html", figures_for=1, jobs=2).read_text()
    assert list(_sections(parallel)) == list(_sections(serial))
    for (title, a), b in zip(_sections(serial).items(), _sections(parallel).values()):
        assert _tables(a) == _tables(b), title
        assert a.count("<img ") == b.count("<img ")
    assert (tmp_path / "one" / "r-tables" / "tables.md").read_text() == (tmp_path / "two" / "r-tables" / "tables.md").read_text()


class Recorder:
    def __init__(self) -> None:
        self.tasks: list[tuple[str, float | None]] = []
        self.advanced: list[float] = []

    @contextmanager
    def task(self, description, total=None):
        self.tasks.append((description, total))
        yield self

    def advance(self, n=1, **fields):
        self.advanced.append(n)

    def log(self, message):
        pass


def test_progress_is_reported_through_the_progress_protocol(tmp_path):
    rec = Recorder()
    build_report(three_tasks(tmp_path / "res"), tmp_path / "r.html", figures_for=0, jobs=1, progress=rec)
    assert rec.tasks == [("report: reading results", None), ("report: 3 section(s), 0 with figures", 3)]
    assert sum(rec.advanced) == 3


@pytest.mark.parametrize("kw, match", [({"figures_for": -1}, "--figures-for -1"), ({"figures_for": 2.5}, "--figures-for 2.5"),
                                       ({"jobs": 0}, "--jobs 0"), ({"jobs": 65}, "--jobs 65")])
def test_bad_figure_and_job_counts_are_refused_before_reading(tmp_path, kw, match):
    with pytest.raises(BeexError, match=re.escape(match)):
        build_report(tmp_path / "does-not-exist", tmp_path / "r.html", **kw)  # refused before the results are read
    assert not (tmp_path / "r.html").exists()


def test_pareto_mask_hand_computed():
    df = pd.DataFrame({"cost": [1.0, 2.0, 2.0, 3.0, None, 1.0], "accuracy": [0.5, 0.6, 0.5, 0.6, 0.9, 0.5]})
    # row 5 equals row 0 (neither beats the other); row 2 is beaten by row 1 (same cost, better) and row 0;
    # row 3 by row 1 (same accuracy, cheaper); row 4 has no cost: on no front
    assert pareto_mask(df, "cost").tolist() == [True, True, False, False, False, True]


# --------------------------------------------------------------------------- where the report may go


def test_cli_refuses_out_inside_a_run_folder_and_the_run_stays_readable(tmp_path):
    results = tmp_path / "results"
    run = write_run(results, "run-x", [make_record("beexformer")])
    cell = next((run / "cells").glob("*.json"))
    before = cell.read_bytes()
    for out in (run / "cells" / "x.json", cell, run / "report.html", results / "report.html"):
        proc = _cli("report", "--results", str(run), "--out", str(out))
        err = proc.stderr.strip()
        assert proc.returncode == 2 and "\n" not in err and "Traceback" not in err, (out, proc.stderr)
        assert "write the report outside the results folders" in err
    assert cell.read_bytes() == before and sorted(p.name for p in (run / "cells").iterdir()) == [cell.name]
    assert not (run / "report.html").exists() and not (results / "report.html").exists()
    listed = _cli("results", "list", "--results", str(results), "--format", "json")
    assert listed.returncode == 0 and json.loads(listed.stdout)[0]["cells_ok"] == 1


def test_out_inside_another_results_folder_or_tables_inside_a_run_are_refused(tmp_path):
    mine = write_run(tmp_path / "mine", "run-m", [make_record("beexformer")])
    other = write_run(tmp_path / "other", "run-o", [make_record("fp32")])
    with pytest.raises(BeexError, match="inside the beexbench run folder"):
        build_report(mine, other / "r.html")  # a run that is not being read
    with pytest.raises(BeexError, match="inside the beexbench results folder"):
        build_report(mine, tmp_path / "other" / "reports" / "r.html")  # a folder of runs
    with pytest.raises(BeexError, match="--tables .* inside --results"):
        build_report(mine, tmp_path / "r.html", tables_dir=mine / "cells")
    assert [p.suffix for p in (mine / "cells").iterdir()] == [".json"] and not (other / "r.html").exists()
    assert build_report(mine, tmp_path / "reports" / "r.html").is_file()  # beside the results: fine


def test_cli_results_naming_a_file_is_one_line(tmp_path):
    f = tmp_path / "results.json"
    f.write_text("{}")
    proc = _cli("report", "--results", str(f), "--out", str(tmp_path / "r.html"))
    err = proc.stderr.strip()
    assert proc.returncode == 2 and "\n" not in err and "Traceback" not in err
    assert "is a file, not a folder" in err and str(f) in err
    assert not (tmp_path / "r.html").exists()


def test_cli_bad_figures_for_is_one_line(tmp_path):
    results = write_run(tmp_path / "res", "run-c", [make_record("beexformer")])
    proc = _cli("report", "--results", str(results), "--out", str(tmp_path / "r.html"), "--figures-for", "-3")
    err = proc.stderr.strip()
    assert proc.returncode == 2 and "\n" not in err and "--figures-for -3" in err
    assert not (tmp_path / "r.html").exists()
