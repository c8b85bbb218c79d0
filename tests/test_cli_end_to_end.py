"""The whole path through the CLI on a tiny offline configuration: run, list, report, results."""
import json

from typer.testing import CliRunner

from beexbench._io import dumps_strict
from beexbench.cli import app, main
from beexbench.results.schema import CellRecord

runner = CliRunner()


def test_run_report_results(tiny_suite, tmp_path):
    tiny_suite.write_text(tiny_suite.read_text().replace("isolate = false", "isolate = true"))  # as real runs measure
    r = runner.invoke(app, ["run", "--config", str(tiny_suite), "--format", "json"])
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout[r.stdout.index("{"):])
    assert len(summary["written"]) == 4 and not summary["failed"]  # beexformer, fp32 and the two reference floors
    results = tmp_path / "results"
    (run_dir,) = [p for p in results.iterdir() if p.is_dir()]
    cells = sorted((run_dir / "cells").glob("*.json"))
    assert len(cells) == 4
    by_model = {json.loads(p.read_text())["key"]["model"]: json.loads(p.read_text()) for p in cells}
    assert set(by_model) == {"beexformer", "fp32", "majority", "bow-linear"}
    for path in cells:  # every record reads as typed metrics and writes back to the same file
        assert dumps_strict(CellRecord.from_dict(json.loads(path.read_text()), source=str(path)).to_dict()) == path.read_text()
    for floor in ("majority", "bow-linear"):
        f = by_model[floor]
        assert f["model"]["role"] == "reference floor" and f["metrics"]["exits"] is None
        assert f["metrics"]["ops"]["uncounted"] == {} and f["metrics"]["size"]["total_bits"] > 0
        assert f["metrics"]["batch1"]["median"] > 0
    assert by_model["majority"]["metrics"]["accuracy"]["value"] == 0.5  # the tiny task is balanced
    assert by_model["bow-linear"]["metrics"]["accuracy"]["value"] >= 0.9  # one sentiment word decides the label
    rec = json.loads(cells[0].read_text())
    m = rec["metrics"]
    assert rec["schema"] == "beexbench-result" and rec["status"] == "ok"
    assert 0 <= m["accuracy"]["value"] <= 1 and m["accuracy"]["n"] == 24
    assert m["batch1"]["n"] >= 3 and m["batch1"]["median"] > 0
    # every thread setting the target lists, each measured in a fresh process with the target's wait policy
    assert sorted({r["threads"] for r in m["latency_by_threads"]}) == rec["target"]["thread_settings"]
    assert all(r["isolated"] and r["wait_policy"] == rec["target"]["wait_policy"] for r in m["latency_by_threads"])
    assert m["batch1"] in m["latency_by_threads"]
    assert [r["batch_size"] for r in m["batch_sweep"]] == [4] and [r["seq_len"] for r in m["seq_len_sweep"]] == [4, 8]
    assert sum(m["exits"]["histogram"]) == 24
    assert m["ops"]["uncounted"] == {}
    assert rec["environment"]["packages"]["torch"]
    # the second run of the same job is finished: a new run re-measures, reusing checkpoints
    # (measured in this process: the isolation was checked above and costs seconds per setting)
    tiny_suite.write_text(tiny_suite.read_text().replace("isolate = true", "isolate = false"))
    r2 = runner.invoke(app, ["run", "--config", str(tiny_suite), "--format", "json"])
    assert r2.exit_code == 0, r2.output
    recs = [json.loads(p.read_text()) for p in results.glob("*/cells/*.json")]
    assert len(recs) == 8 and not any(x["model"]["trained_this_run"] for x in recs[2:] if x["run_id"] != rec["run_id"])

    out = tmp_path / "report.html"
    r = runner.invoke(app, ["report", "--results", str(results), "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "beexformer" in out.read_text() and "bow-linear (tiny) — reference floor" in out.read_text()

    r = runner.invoke(app, ["results", "list", "--results", str(results), "--format", "json"])
    rows = json.loads(r.stdout)
    assert len(rows) == 2 and all(row["cells_ok"] == 4 for row in rows)
    r = runner.invoke(app, ["results", "export", "--results", str(results), "--out", str(tmp_path / "all.csv")])
    assert r.exit_code == 0, r.output
    # one row per cell: the second run's records replace the first's (as in the report), and a note says so
    assert len((tmp_path / "all.csv").read_text().strip().splitlines()) == 5 and r.output.count("note: ") == 4


def test_task_info_shows_the_card(tiny_suite):
    spec = tiny_suite.read_text().split('tasks = ["')[1].split('"')[0]
    r = runner.invoke(app, ["info", spec, "--format", "json"])
    assert r.exit_code == 0, r.output
    card = json.loads(r.stdout)
    assert card["label_names"] == ["neg", "pos"] and sum(card["split_sizes"].values()) == card["num_examples"] == 240


def _one_line_error(capsys, argv):
    try:
        main(argv)
    except SystemExit as exc:
        code = exc.code
    err = capsys.readouterr().err.strip()
    return code, err


def test_user_errors_are_one_line(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("BEEXBENCH_CACHE", str(tmp_path / "cache"))
    code, err = _one_line_error(capsys, ["run", "--suite", "smoke", "--models", "beexformr"])
    assert code == 2 and err.startswith("error: unknown model 'beexformr'") and "did you mean beexformer" in err and "\n" not in err
    code, err = _one_line_error(capsys, ["run", "--suite", "smoke", "--tasks", "rotten_tomatos"])
    assert code == 2 and "unknown task" in err and "rotten_tomatoes" in err and "\n" not in err
    code, err = _one_line_error(capsys, ["run", "--suite", "smoke", "--target", "gpu"])
    assert code == 2 and "unknown target" in err and "\n" not in err
    code, err = _one_line_error(capsys, ["report", "--results", str(tmp_path / "nothing")])
    assert code == 2 and "run `beexbench run` first" in err and "\n" not in err
