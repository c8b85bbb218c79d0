"""The HTML report and its table exports, checked against synthetic records with known numbers,
and opened in a real headless browser (skipped when chromium is not installed)."""
from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from beexbench.errors import BeexError
from beexbench.report import build_report, default_tables_dir
from beexbench.report.tables import fmt_accuracy
from beexbench.results.schema import CellKey, CellRecord
from beexbench.results.store import RunDir
from records import sample_metrics

# --------------------------------------------------------------------------- synthetic records


def make_record(model="beexformer", task="rotten_tomatoes", target="cpu", seed=0, *, acc=0.80, n=400, ci=(0.76, 0.84),
                total_bits=8_000_000, bits_no_emb=150_000, macs_fp32=60_000.0, bops=760_000.0, latency=2.0,
                latency_ci=(1.9, 2.1), p90=2.4, energy=None, provenance="unavailable", mean_exit=2.0, n_blocks=3,
                histogram=(0, 300, 100), emulated=False, cpu="Test CPU 9000", run_id="run-a", warnings=(),
                finished_at="2026-01-01T00:00:00+00:00", description="A model. More words.", status="ok",
                metric="accuracy", undefined=None) -> CellRecord:
    """A complete record as the runner writes it (schema version 2); ``n_blocks=None``: no exits."""
    return CellRecord(
        key=CellKey(model, task, target, seed), run_id=run_id, status=status,
        error=None if status == "ok" else "boom",
        model={"name": model, "description": description, "training_note": "trained from scratch on the task's train split; no distillation"},
        task={"name": task, "description": f"{task}: a test dataset", "source": "synthetic", "split_sizes": {"train": 10, "val": 10, "test": n}},
        target={"name": target, "device": "cpu", "threads": 1 if emulated else 2, "emulated": emulated,
                "description": "emulated on the host" if emulated else "host CPU", "notes": []},
        metrics=None if status != "ok" else sample_metrics(
            acc=acc, metric=metric, undefined=undefined, n=n, ci=ci, total_bits=total_bits, bits_no_emb=bits_no_emb,
            macs_fp32=macs_fp32, bops=bops, latency=latency, latency_ci=latency_ci, p90=p90, energy=energy,
            provenance=provenance, mean_exit=mean_exit, n_blocks=n_blocks, histogram=histogram),
        environment={"python": "3.11", "packages": {"torch": "2.x", "beexbench": "0.1.0"}, "git": {"commit": "abc123", "dirty": False},
                     "cpu": {"model": cpu, "logical_cores": 2, "usable_cores": 2}, "threads_used": 2, "gpus": [],
                     "os": {"system": "Linux", "release": "6"}, "timestamp_utc": finished_at},
        warnings=list(warnings), started_at=finished_at, finished_at=finished_at,
    )


def write_run(root: Path, run_id: str, records: list[CellRecord]) -> Path:
    run = RunDir(root / run_id)
    run.write_run({"run_id": run_id, "suite": "test"})
    for r in records:
        r.run_id = run_id
        run.write_cell(r)
    return run.path


def rich_results(root: Path) -> Path:
    """Two runs, two targets (one emulated), ablations, seeds, energy of every provenance."""
    a = [
        make_record("beexformer", seed=0, acc=0.80, ci=(0.76, 0.84), latency=2.0, energy=0.004, provenance="estimated:tdp-share",
                    warnings=["wide CI: ±40% of median; the machine may be noisy"]),
        make_record("beexformer-ffn", seed=0, acc=0.77, ci=(0.73, 0.81), bits_no_emb=300_000, total_bits=8_150_000,
                    macs_fp32=120_000.0, latency=2.5, description="Ablation A6: a plain GELU FFN instead of the SLFN. Extra."),
        make_record("beexformer-ste", seed=0, acc=0.74, ci=(0.70, 0.78), latency=2.1, description="Ablation A1: the clipped STE."),
        make_record("fp32", seed=0, acc=0.83, ci=(0.79, 0.87), total_bits=12_000_000, bits_no_emb=4_000_000, macs_fp32=1_000_000.0,
                    bops=0.0, latency=1.0, latency_ci=(0.95, 1.05), p90=1.2, energy=0.01, provenance="estimated:tdp-share", mean_exit=2.5),
        make_record("int8-dynamic", seed=0, acc=0.82, ci=(0.78, 0.86), total_bits=9_000_000, bits_no_emb=1_000_000,
                    macs_fp32=900_000.0, bops=0.0, latency=1.5, n_blocks=None),
    ]
    b = [
        make_record("beexformer", seed=1, acc=0.78, ci=(0.74, 0.82), latency=2.2),
        make_record("beexformer", seed=2, acc=0.82, ci=(0.78, 0.86), latency=1.8),
        make_record("beexformer-ffn", seed=1, acc=0.75, ci=(0.71, 0.79), bits_no_emb=300_000, total_bits=8_150_000,
                    macs_fp32=120_000.0, latency=2.4, description="Ablation A6: a plain GELU FFN instead of the SLFN. Extra."),
        make_record("beexformer", target="edge-1t", emulated=True, acc=0.80, latency=4.0, latency_ci=(3.8, 4.2), p90=4.5),
        make_record("fp32", target="edge-1t", emulated=True, acc=0.83, total_bits=12_000_000, bits_no_emb=4_000_000,
                    macs_fp32=1_000_000.0, bops=0.0, latency=2.0, latency_ci=(1.9, 2.1), p90=2.2),
        make_record("broken", status="failed"),
    ]
    write_run(root, "run-a", a)
    write_run(root, "run-b", b)
    return root


# --------------------------------------------------------------------------- helpers


def _tables(html: str) -> list[str]:
    return re.findall(r"<table data-kind=\"(\w+)\">(.*?)</table>", html, flags=re.S)


def _rows(table_html: str) -> list[list[str]]:
    import html as h

    return [[h.unescape(re.sub(r"<[^>]+>", "", c)) for c in re.findall(r"<td[^>]*>(.*?)</td>", tr, flags=re.S)]
            for tr in re.findall(r"<tr[^>]*>(.*?)</tr>", table_html.split("<tbody>")[1], flags=re.S)]


def _section(html: str, title_fragment: str) -> str:
    for sec in re.findall(r"<section id=\"[^\"]+\">(.*?)</section>", html, flags=re.S):
        if title_fragment in sec.split("</h2>")[0]:
            return sec
    raise AssertionError(f"no section titled {title_fragment!r}")


@pytest.fixture(scope="module")
def rich_report(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report")
    results = rich_results(tmp / "results")
    out = build_report([results], tmp / "out" / "report.html")
    return out, out.read_text(encoding="utf-8")


# --------------------------------------------------------------------------- structure


def test_summary_rows_match_the_records(rich_report):
    _, html = rich_report
    sec = _section(html, "rotten_tomatoes on cpu · Test CPU 9000")
    kind, summary = _tables(sec)[0]
    assert kind == "summary"
    rows = {r[0]: r for r in _rows(summary)}
    assert set(rows) == {"beexformer", "beexformer-ffn", "beexformer-ste", "fp32", "int8-dynamic"}  # no duplicate rows
    fp32 = rows["fp32"]
    assert fp32[1] == "1"
    assert fp32[2] == "83.0 [79.0, 87.0]"  # one seed: the record's Wilson interval
    assert fp32[3] == f"{12_000_000 / 8 / 1024:,.1f} / {4_000_000 / 8 / 1024:,.1f}"
    assert fp32[4] == "1.0 / 1.0 / 1.0"  # the reference itself
    # int8-dynamic: 12e6 / 9e6 bits, 4e6 / 1e6 without embeddings, (12e6/8 + 1000) / (9e6/8 + 1000) on disk
    assert rows["int8-dynamic"][4] == f"{12 / 9:.1f} / 4.0 / {(1_500_000 + 1000) / (1_125_000 + 1000):.1f}"
    assert fp32[5] == "1.00" and fp32[6] == "0.00" and fp32[7] == "2.00"  # MACs, BOPs, OPs in millions
    assert fp32[8] == "1.00 / 1.20 @ 2t"  # the fastest thread setting, named
    assert fp32[9] == "10 mJ (estimated:tdp-share)"
    assert fp32[10] == "2.50 / 3"
    # three seeds of beexformer (two runs) -> one row, mean ± sample std
    bx = rows["beexformer"]
    assert bx[1] == "3"
    assert bx[2] == "80.0 ± 2.0"
    assert bx[8].startswith("2.00 / ")  # mean of the medians 2.0, 2.2, 1.8
    assert bx[9] == "4 mJ (estimated:tdp-share, 1 of 3 seeds)"
    assert rows["int8-dynamic"][10] == "—"  # no exits recorded
    assert rows["beexformer-ste"][9] == "unavailable"  # never a zero
    # fp32: most accurate and fastest, so on the accuracy-latency front
    assert "latency" in fp32[11]


def test_ablation_table_deltas(rich_report):
    _, html = rich_report
    sec = _section(html, "rotten_tomatoes on cpu · Test CPU 9000")
    abl = dict(_tables(sec))["ablation"]
    rows = {r[0]: r for r in _rows(abl)}
    assert set(rows) == {"beexformer (full model)", "beexformer-ffn", "beexformer-ste"}
    ffn, ste = rows["beexformer-ffn"], rows["beexformer-ste"]
    assert ffn[1] == "Ablation A6: a plain GELU FFN instead of the SLFN"
    assert ffn[2] == "2" and ffn[3] == "76.0 ± 1.4"  # seeds 0 and 1: 0.77, 0.75
    assert ffn[4] == "-4.0"  # 76.0 - 80.0 (full model mean over 3 seeds)
    assert ffn[6] == f"{(8_150_000 / 8_000_000 - 1) * 100:+.1f}"
    assert ste[3] == "74.0 [70.0, 78.0]" and ste[4] == "-6.0"
    assert rows["beexformer (full model)"][4] == "0 (ref.)"
    # the emulated target has no variants -> no ablation table there
    assert "ablation" not in dict(_tables(_section(html, "edge-1t")))


def test_targets_are_kept_apart_and_emulation_is_said(rich_report):
    _, html = rich_report
    sec = _section(html, "rotten_tomatoes on edge-1t · emulated on Test CPU 9000")
    assert "Emulated target" in sec
    rows = {r[0]: r for r in _rows(dict(_tables(sec))["summary"])}
    assert set(rows) == {"beexformer", "fp32"}
    assert rows["fp32"][8] == "2.00 / 2.20 @ 2t"


def test_figures_and_energy_unavailable(rich_report):
    _, html = rich_report
    cpu = _section(html, "on cpu")
    assert len(re.findall(r'<img alt="[^"]*" src="data:image/png;base64,', cpu)) == 6  # 4 Pareto + histogram + δ curve
    assert "Not plotted (energy unavailable)" in cpu
    edge = _section(html, "edge-1t")
    assert 'data-unavailable="Accuracy vs energy' in edge  # no figure at all: said, not plotted as zeros
    assert len(re.findall(r"<img ", edge)) == 5


def test_notes_warnings_and_failures(rich_report):
    _, html = rich_report
    assert "no distillation (beexformer, beexformer-ffn, beexformer-ste, fp32, int8-dynamic" in html
    assert "BOPs/64" in html
    assert "not SST-2, GLUE" in html
    assert "wide CI: ±40% of median; the machine may be noisy" in html
    assert "Energy is estimated, not measured" in html
    assert "Failed cells" in html and "broken" in html
    assert "EMULATED" in html


def test_self_contained(rich_report):
    out, html = rich_report
    assert not re.search(r"(src|href)=\"(?!data:|#)", html)
    assert "http://" not in html and "https://" not in html
    assert "<script" not in html
    assert out.stat().st_size < 2_000_000


def test_table_exports_carry_the_same_numbers(rich_report):
    out, html = rich_report
    folder = default_tables_dir(out)
    md = (folder / "tables.md").read_text()
    assert "| fp32 | 1 | 83.0 [79.0, 87.0] |" in md
    assert "| beexformer-ffn | Ablation A6: a plain GELU FFN instead of the SLFN | 2 | 76.0 ± 1.4 | -4.0 |" in md
    with open(folder / "summary.csv", newline="") as f:
        summary = list(csv.DictReader(f))
    cpu = {r["model"]: r for r in summary if r["target"].startswith("cpu")}
    assert float(cpu["fp32"]["accuracy"]) == pytest.approx(0.83)
    assert float(cpu["beexformer"]["accuracy"]) == pytest.approx(0.80)
    assert float(cpu["beexformer"]["accuracy_std"]) == pytest.approx(0.02)
    assert cpu["beexformer"]["n_seeds"] == "3" and cpu["beexformer"]["seeds"] == "0,1,2"
    assert cpu["beexformer-ste"]["energy_j_per_sample"] == ""
    with open(folder / "ablation.csv", newline="") as f:
        abl = {r["model"]: r for r in csv.DictReader(f)}
    assert float(abl["beexformer-ste"]["delta_accuracy_pp"]) == pytest.approx(-6.0)


def test_same_seed_in_two_runs_counts_once(tmp_path):
    old = make_record("fp32", acc=0.70, finished_at="2026-01-01T00:00:00+00:00")
    new = make_record("fp32", acc=0.90, ci=(0.87, 0.93), finished_at="2026-02-01T00:00:00+00:00")
    write_run(tmp_path / "res", "run-old", [old])
    write_run(tmp_path / "res", "run-new", [new])
    html = build_report(tmp_path / "res", tmp_path / "r.html").read_text()
    rows = _rows(dict(_tables(html))["summary"])
    assert len(rows) == 1 and rows[0][2] == "90.0 [87.0, 93.0]"
    assert "most recent one is shown" in html


def test_suites_with_different_model_sizes_are_kept_apart(tmp_path):
    """The same model name trained by two suites (different configs) is two rows, each compared
    with the fp32 counterpart of its own suite; a packed deployment is not an ablation."""
    recs = [make_record("fp32", total_bits=12_000_000), make_record("beexformer", total_bits=8_000_000),
            make_record("fp32", total_bits=3_000_000), make_record("beexformer", total_bits=1_000_000),
            make_record("beexformer-packed", total_bits=1_000_000)]
    for rec, setting in zip(recs, ["default", "default", "smoke", "smoke", "smoke"]):
        rec.key = CellKey(rec.key.model, rec.key.task, rec.key.target, rec.key.seed, setting)
    write_run(tmp_path / "res", "run-x", recs)
    html = build_report(tmp_path / "res", tmp_path / "r.html").read_text()
    tables = dict(_tables(html))
    rows = {r[0]: r for r in _rows(tables["summary"])}
    assert set(rows) == {"fp32", "beexformer", "fp32 (smoke)", "beexformer (smoke)", "beexformer-packed (smoke)"}
    assert rows["beexformer"][4].startswith("1.5 / ") and rows["beexformer (smoke)"][4].startswith("3.0 / ")
    assert "ablation" not in tables


def test_seeds_of_another_configuration_under_the_same_suite_name_are_not_averaged(tmp_path):
    """Two runs named "default" with different model sizes: only the seeds trained like the most
    recent record are aggregated (seed and calibrated δ may differ), the rest are left out, said so."""
    def rec(seed, acc, d_model, delta, when):
        r = make_record("beexformer", seed=seed, acc=acc, finished_at=when)
        r.model["config"] = {"encoder": {"d_model": d_model}, "train": {"seed": seed}, "exit": {"delta": delta},
                             "calibration": {"param": "delta"}}
        return r
    write_run(tmp_path / "res", "run-old", [rec(0, 0.60, 64, 0.5, "2026-01-01T00:00:00+00:00")])
    write_run(tmp_path / "res", "run-new", [rec(1, 0.80, 128, 0.3, "2026-01-02T00:00:00+00:00"),
                                            rec(2, 0.90, 128, 0.1, "2026-01-02T01:00:00+00:00")])
    html = build_report(tmp_path / "res", tmp_path / "r.html").read_text()
    rows = _rows(dict(_tables(html))["summary"])
    assert len(rows) == 1 and rows[0][2].startswith("85.0")  # mean of seeds 1 and 2; seed 0's 60.0 left out
    assert "1 record(s) were left out" in html


def test_names_are_escaped(tmp_path):
    evil = "<script>alert(1)</script>"
    rec = make_record(f"m{evil}", task=f"t{evil}", target=f"x{evil}", cpu=f"cpu{evil}",
                      warnings=[f"w{evil}"], description=f"d{evil}")
    write_run(tmp_path / "res", "run-x", [rec, make_record("beexformer-$x$|y", task=f"t{evil}", target=f"x{evil}", cpu=f"cpu{evil}")])
    out = build_report(tmp_path / "res", tmp_path / "r.html")
    html = out.read_text()
    assert "<script" not in html
    assert "m&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "t&lt;script&gt;" in html and "w&lt;script&gt;" in html
    md = (default_tables_dir(out) / "tables.md").read_text()
    assert "beexformer-$x$\\|y" in md  # a pipe cannot break the Markdown table


def test_no_results_is_a_clear_error(tmp_path):
    write_run(tmp_path / "res", "run-f", [make_record(status="failed")])
    with pytest.raises(BeexError, match="no finished results"):
        build_report(tmp_path / "res", tmp_path / "r.html")


def test_accuracy_formats():
    assert fmt_accuracy({"accuracy": 0.5, "n_seeds": 1, "accuracy_lo": 0.4, "accuracy_hi": 0.6, "accuracy_std": float("nan")}) == "50.0 [40.0, 60.0]"
    assert fmt_accuracy({"accuracy": 0.5, "n_seeds": 2, "accuracy_lo": 0.4, "accuracy_hi": 0.6, "accuracy_std": 0.01}) == "50.0 ± 1.0"


def test_cli_writes_report_and_tables(tmp_path):
    from typer.testing import CliRunner

    from beexbench.cli import app

    results = write_run(tmp_path / "res", "run-c", [make_record("beexformer"), make_record("beexformer-ste", acc=0.7)])
    tables = tmp_path / "paper"
    res = CliRunner().invoke(app, ["report", "--results", str(results), "--out", str(tmp_path / "r.html"), "--tables", str(tables)])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "r.html").is_file()
    assert {p.name for p in tables.iterdir()} == {"tables.md", "summary.csv", "ablation.csv"}
    assert "tables:" in res.output


# --------------------------------------------------------------------------- real browser

PROBE = """<script>window.addEventListener('load', () => {
  const imgs = [...document.images].map(i => ({alt: i.alt, ok: i.complete && i.naturalWidth > 0}));
  const res = performance.getEntriesByType('resource').map(e => e.name);
  const p = document.createElement('pre'); p.id = 'probe';
  p.textContent = JSON.stringify({imgs, res});
  document.body.appendChild(p);
});</script>"""


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        if path := shutil.which(name):
            return path
    return None


def chromium_args(tmp: Path) -> list[str]:
    return ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-extensions",
            f"--user-data-dir={tmp / 'profile'}", "--enable-logging=stderr", "--v=0"]


@pytest.mark.skipif(sys.platform != "linux", reason="the browser check runs on Linux")
def test_report_renders_in_headless_chromium(rich_report, tmp_path):
    browser = _chromium()
    if browser is None:
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    out, html = rich_report
    # The report ships without scripts and forbids them (CSP); the probe page allows only this inline one.
    probed = html.replace("default-src 'none';", "default-src 'none'; script-src 'unsafe-inline';", 1)
    probed = probed.replace("</body>", PROBE + "</body>")
    page = tmp_path / "probe.html"
    page.write_text(probed, encoding="utf-8")
    proc = subprocess.run([browser, *chromium_args(tmp_path), "--virtual-time-budget=5000", "--dump-dom", page.as_uri()],
                          capture_output=True, text=True, timeout=90, env={**os.environ, "LANG": "C"})
    match = re.search(r'<pre id="probe">(.*?)</pre>', proc.stdout, flags=re.S)
    assert match, f"probe did not run; chromium said:\n{proc.stderr[-2000:]}"
    import html as h

    probe = json.loads(h.unescape(match.group(1)))
    console = [line for line in proc.stderr.splitlines() if "CONSOLE" in line]
    assert not console, console
    assert probe["res"] == []  # no network requests of any kind
    assert len(probe["imgs"]) == html.count("<img ") > 10
    assert all(i["ok"] for i in probe["imgs"]), [i["alt"] for i in probe["imgs"] if not i["ok"]]


# --------------------------------------------------------------------------- reference floors


def floor_record(model: str, acc: float | None, **kw) -> CellRecord:
    """A reference floor's cell as the runner writes it: role, no exits, tiny and cheap."""
    defaults = dict(total_bits=64, bits_no_emb=64, macs_fp32=0.0, bops=0.0, latency=0.02, latency_ci=(0.019, 0.021), p90=0.03,
                    ci=(acc - 0.04, acc + 0.04) if acc is not None else (None, None), n_blocks=None,
                    description="Reference floor: a test floor.")
    rec = make_record(model, acc=acc, **{**defaults, **kw})
    rec.model["role"] = "reference floor"
    return rec


def floors_results(root: Path, fp32_acc: float, *, metric: str = "accuracy") -> Path:
    recs = [
        make_record("beexformer", acc=0.70, ci=(0.66, 0.74), metric=metric),
        make_record("fp32", acc=fp32_acc, ci=(fp32_acc - 0.04, fp32_acc + 0.04), total_bits=12_000_000, bits_no_emb=4_000_000,
                    macs_fp32=1_000_000.0, bops=0.0, latency=1.0, metric=metric),  # the δ sweeps are keyed by the metric
        floor_record("majority", 0.50 if metric == "accuracy" else None, metric=metric),
        floor_record("bow-linear", 0.76, total_bits=100_000, bits_no_emb=100_000, macs_fp32=40.0, metric=metric),
    ]
    return write_run(root, "run-floors", recs)


def test_floors_are_reference_rows_and_lines_not_candidates(tmp_path, monkeypatch):
    import beexbench.report.sections as build

    calls = []
    original = build.pareto_plot

    def spy(df, *args, **kwargs):
        calls.append((sorted(df["label"]), kwargs.get("floors")))
        return original(df, *args, **kwargs)

    monkeypatch.setattr(build, "pareto_plot", spy)
    out = build_report(floors_results(tmp_path / "res", fp32_acc=0.80), tmp_path / "r.html")
    html = out.read_text()
    summary = dict(_tables(html))["summary"]
    rows = {r[0]: r for r in _rows(summary)}
    assert set(rows) == {"fp32", "beexformer", "majority — reference floor", "bow-linear — reference floor"}
    assert [r[0] for r in _rows(summary)] == ["fp32", "bow-linear — reference floor", "beexformer", "majority — reference floor"]
    # bow-linear is more accurate and far smaller than beexformer, yet on no front, and beexformer keeps its place
    assert rows["bow-linear — reference floor"][11] == "—" and rows["majority — reference floor"][11] == "—"
    assert "size" in rows["beexformer"][11]
    assert rows["majority — reference floor"][2] == "50.0 [46.0, 54.0]" and rows["majority — reference floor"][10] == "—"
    assert summary.count('<tr class="floor">') == 2
    # every accuracy plot: the neural models as points, the floors as lines
    assert len(calls) == 3 and all(labels == ["beexformer", "fp32"] for labels, _ in calls)  # energy: unavailable
    assert all(floors == [("majority", 50.0), ("bow-linear", 76.0)] for _, floors in calls)
    assert "Dashed horizontal lines: reference floors (test accuracy: majority 50.0, bow-linear 76.0)" in html
    # fp32 (80%) beats bow-linear (76%) and is not named; beexformer (70%) is (every model is judged: issue 28)
    assert "fp32 scores" not in html and "beexformer scores 70.0% [66.0, 74.0] test accuracy, 6.0 percentage points" in html
    with open(default_tables_dir(out) / "summary.csv", newline="") as f:
        roles = {r["model"]: r["role"] for r in csv.DictReader(f)}
    assert roles == {"fp32": "model", "beexformer": "model", "majority": "reference floor", "bow-linear": "reference floor"}


def test_a_neural_model_below_bow_linear_is_a_warning(tmp_path):
    import html as h

    html = h.unescape(build_report(floors_results(tmp_path / "res", fp32_acc=0.72), tmp_path / "r.html").read_text())
    warning = ("rotten_tomatoes on cpu · Test CPU 9000: the best neural model, fp32, scores 72.0% test accuracy, "
               "below the bow-linear reference floor's 76.0%")
    assert warning in _section(html, "Warnings") and warning in _section(html, "rotten_tomatoes on cpu")


def test_a_model_no_better_than_majority_is_called_a_failed_training(tmp_path):
    import html as h

    recs = [
        make_record("beexformer", acc=0.50, ci=(0.46, 0.54)),  # exactly the class prior: collapsed to one label
        make_record("fp32", acc=0.80),
        floor_record("majority", 0.50),
        floor_record("bow-linear", 0.76, total_bits=100_000, bits_no_emb=100_000, macs_fp32=40.0),
    ]
    html = h.unescape(build_report(write_run(tmp_path / "res", "run-collapse", recs), tmp_path / "r.html").read_text())
    warning = ("rotten_tomatoes on cpu · Test CPU 9000: beexformer scores 50.0% test accuracy, no better than the majority "
               "floor's 50.0% (always the most frequent label): its training failed here")
    assert warning in _section(html, "Warnings") and warning in _section(html, "rotten_tomatoes on cpu")
    assert "fp32 scores" not in html  # 80% is above both floors: no warning of either kind
    assert html.count("data-floor-warning") == 2  # the task's section and the Warnings section, once each


def test_regression_majority_has_no_pearson_r_and_no_line(tmp_path):
    import html as h

    html = h.unescape(build_report(floors_results(tmp_path / "res", fp32_acc=0.72, metric="pearson_r"), tmp_path / "r.html").read_text())
    rows = {r[0]: r for r in _rows(dict(_tables(html))["summary"])}
    assert rows["majority — reference floor"][2] == "undefined"
    assert "No line for majority: Pearson r is undefined (constant prediction)." in html
    assert "the best neural model, fp32, scores 0.720 test Pearson r, below the bow-linear reference floor's 0.760" in html


def test_floor_lines_are_dashed_named_horizontal_lines():
    import matplotlib.pyplot as plt

    from beexbench.report.plots import floor_lines

    fig, ax = plt.subplots()
    ax.plot([1, 10], [60, 80])
    floor_lines(ax, [("bow-linear", 76.0), ("majority", 50.0)])
    lines = {line.get_label(): line for line in ax.get_lines()[1:]}
    assert set(lines) == {"majority — reference floor", "bow-linear — reference floor"}
    for name, y in (("majority", 50.0), ("bow-linear", 76.0)):
        line = lines[f"{name} — reference floor"]
        assert line.get_linestyle() == "--" and list(line.get_ydata()) == [y, y]
    assert {t.get_text() for t in ax.texts} == {"majority 50.0", "bow-linear 76.0"}
    assert ax.get_ylim()[0] < 50.0  # the axis reaches down to the lowest floor
    plt.close(fig)


def test_latency_cell_names_the_fastest_setting_and_shows_the_others():
    from beexbench.report.tables import fmt_latency

    row = {"latency_ms": 0.41, "latency_p90_ms": 0.5, "latency_threads": "1", "latency_by_threads": {1: 0.41, 2: 1.234}}
    assert fmt_latency(row) == "0.41 / 0.50 @ 1t (2t: 1.23)"
    assert fmt_latency({"latency_ms": 2.0, "latency_p90_ms": 2.2, "latency_threads": "", "latency_by_threads": {}}) == "2.00 / 2.20"


def test_rows_trained_by_distillation_say_so_and_the_notes_name_each_models_training(tmp_path):
    plain, taught = make_record("beexformer"), make_record("bibert-style", acc=0.70)
    taught.model = {**taught.model, "config": {"distill": {"teacher": "fp32", "logits": 1.0, "hidden": 1.0}},
                    "training_note": "fine-tuned on the task's train split from the trained fp32; distilled from fp32"}
    write_run(tmp_path / "res", "run-kd", [plain, taught])
    html = build_report(tmp_path / "res", tmp_path / "r.html").read_text()
    rows = {r[0] for r in _rows(dict(_tables(html))["summary"])}
    assert rows == {"beexformer", "bibert-style (KD from fp32)"}
    assert "distilled from fp32 (bibert-style)" in html
    assert "no distillation (beexformer)" in html


def test_cells_measured_on_two_cluster_nodes_of_the_same_model_are_two_sections(tmp_path):
    recs = [make_record("fp32", acc=0.81), make_record("fp32", acc=0.79), make_record("beexformer", acc=0.78)]
    for rec, node in zip(recs, ["rack-a", "rack-b", None]):
        if node:  # measured by a Ray executor on that node (same CPU model as the local cell)
            rec.environment = {**rec.environment, "node": {"name": node, "ray_node_id": f"id-{node}"}}
            rec.run_id = f"run-{node}"
    write_run(tmp_path / "res", "run-a", [recs[0]])
    write_run(tmp_path / "res", "run-b", [recs[1]])
    write_run(tmp_path / "res", "run-local", [recs[2]])
    html = build_report(tmp_path / "res", tmp_path / "r.html").read_text()
    cpu = recs[0].environment["cpu"]["model"]
    for title, acc in ((f"rotten_tomatoes on cpu · {cpu} on node rack-a", "81.0"), (f"rotten_tomatoes on cpu · {cpu} on node rack-b", "79.0")):
        rows = _rows(dict(_tables(_section(html, title)))["summary"])
        assert [r[0] for r in rows] == ["fp32"] and rows[0][2].startswith(acc)
    assert _rows(dict(_tables(_section(html, f"rotten_tomatoes on cpu · {cpu}")))["summary"])[0][0] == "beexformer"
