"""`beexbench results export --to mlflow` against a real local MLflow store (SQLite, MLflow's default
local backend; and the file store): an exported cell reads back with its record's figures, a
re-export updates the same MLflow runs, a failed cell is a FAILED run, a changed parameter is refused
unless --replace, and a missing extra or a bad URI is a one-line error (exit 2) before any write."""
from __future__ import annotations

import json
import subprocess
import sys
from importlib.util import find_spec
from pathlib import Path

import pytest

from beexbench.errors import BeexError
from beexbench.results.columns import columns
from beexbench.results.schema import CellRecord
from beexbench.results.store import RunDir
from test_report import make_record, write_run

needs_mlflow = pytest.mark.skipif(
    find_spec("mlflow") is None or find_spec("sqlalchemy") is None or find_spec("alembic") is None,
    reason="mlflow (with SQLAlchemy and alembic) is not installed: pip install 'beexbench[mlflow]'")
CLI = [sys.executable, "-c", "from beexbench.cli import main; main()", "results", "export"]
NO_MLFLOW = [sys.executable, "-c", "import sys; sys.modules['mlflow'] = None; sys.modules['mlflow.tracking'] = None; "
             "from beexbench.cli import main; main()", "results", "export"]
LONG = "x" * 7000  # over MLflow's 6000-character parameter limit


def config(d_model=128):
    return {"encoder": {"d_model": d_model, "n_blocks": 6}, "train": {"lr": 0.001, "epochs": 3}, "exit": {"delta": None},
            "tokens": [1, 2], "note": LONG}


def cells(acc=0.80, d_model=128):
    ee = make_record("beexformer", acc=acc, ci=(0.76, 0.84), energy=0.004, provenance="estimated:tdp-share")
    ee.model["config"] = config(d_model)
    fp = make_record("fp32", acc=0.83, ci=(0.79, 0.87), latency=1.0, latency_ci=(0.95, 1.05), p90=1.2, total_bits=12_000_000)
    fp.model["config"] = config()
    return [ee, fp, make_record("broken", status="failed")]


def runs(uri, experiment="test"):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    found = client.search_runs([exp.experiment_id], max_results=1000)
    return client, {r.data.tags["beexbench.cell"].split("/")[1].split("__")[0]: r for r in found}


def export(root, uri, **kw):
    from beexbench.results.mlflow_export import export_mlflow

    return export_mlflow([root], uri=uri, **kw)


@pytest.fixture
def store(tmp_path):
    return tmp_path / "res", f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}"


@needs_mlflow
def test_an_exported_run_reads_back_with_the_record_s_figures(store, tmp_path, monkeypatch):
    root, uri = store
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    write_run(root, "run-a", cells())
    report = tmp_path / "report.html"
    report.write_text("<html>the report</html>")
    done = export(root, uri, report=report)
    assert (done.created, done.updated, done.unchanged, done.experiments) == (3, 0, 0, ["test"])
    client, by_model = runs(uri)
    assert sorted(by_model) == ["beexformer", "broken", "fp32"]
    ee = by_model["beexformer"]
    m = ee.data.metrics
    # the headline figures, by hand from make_record: accuracy and its Wilson bounds, latency median / p90 and
    # its CI, size bits and disk bytes (bits/8 + 1000), MACs, mean exit block, energy per sample
    assert (m["accuracy"], m["accuracy_lo"], m["accuracy_hi"]) == (0.80, 0.76, 0.84)
    assert (m["latency_ms"], m["latency_p90_ms"], m["latency_lo"], m["latency_hi"]) == (2.0, 2.4, 1.9, 2.1)
    assert (m["size_bits"], m["disk_bytes"], m["macs"], m["mean_exit"], m["energy_j"]) == (
        8_000_000, 1_001_000, 60_000, 2.0, 0.004)
    rec = next(r for r in RunDir(root / "run-a").cells() if r.key.model == "beexformer")
    declared = {c.name: float(c.value(rec.metrics)) for c in columns() if c.numeric and c.value(rec.metrics) is not None}
    assert m == declared  # every declared numeric column, nothing else
    assert "energy_j" not in by_model["fp32"].data.metrics  # not measured: left out, never a zero
    assert by_model["fp32"].data.metrics["latency_ms"] == 1.0
    p = ee.data.params
    assert (p["cell.model"], p["cell.task"], p["cell.target"], p["cell.seed"], p["cell.setting"]) == (
        "beexformer", "rotten_tomatoes", "cpu", "0", "default")
    assert (p["config.encoder.d_model"], p["config.train.lr"], p["config.exit.delta"], p["config.tokens"]) == (
        "128", "0.001", "null", "[1, 2]")
    assert "config.note" not in p  # too long for a parameter: whole in the overflow artifact, not truncated
    t = ee.data.tags
    assert (t["beexbench.run_id"], t["beexbench.git_commit"], t["beexbench.cpu"], t["beexbench.version"],
            t["beexbench.status"]) == ("run-a", "abc123", "Test CPU 9000", "0.1.0", "ok")
    assert ee.info.status == "FINISHED"
    got = Path(client.download_artifacts(ee.info.run_id, "beexbench", str(tmp_path / "dl")))
    assert json.loads((got / "params_overflow.json").read_text())["params"] == {"config.note": LONG}
    back = CellRecord.from_dict(json.loads((got / "cell.json").read_text()))
    assert back.to_dict() == rec.to_dict()
    assert (got / "report.html").read_text() == "<html>the report</html>"
    assert (tmp_path / "mlflow" / "mlartifacts" / "test").is_dir()  # artifacts go beside the database,
    assert list((tmp_path / "cwd").iterdir()) == []  # not into the current folder (MLflow's ./mlruns)


@needs_mlflow
def test_a_failed_cell_is_a_failed_run_with_its_error(store):
    root, uri = store
    write_run(root, "run-a", cells())
    export(root, uri)
    _, by_model = runs(uri)
    broken = by_model["broken"]
    assert broken.info.status == "FAILED"
    assert broken.data.tags["beexbench.error"] == "boom" and broken.data.tags["beexbench.status"] == "failed"
    assert broken.data.metrics == {}


@needs_mlflow
@pytest.mark.parametrize("backend", ["sqlite", "file"])
def test_a_re_export_updates_the_same_mlflow_runs(tmp_path, backend):
    root = tmp_path / "res"
    uri = f"sqlite:///{tmp_path / 'm.db'}" if backend == "sqlite" else f"file:{tmp_path / 'mlruns'}"
    write_run(root, "run-a", cells(acc=0.80))
    export(root, uri)
    write_run(root, "run-a", cells(acc=0.90)[:1])  # the same cell, measured again: a new accuracy
    done = export(root, uri)
    assert (done.created, done.updated, done.unchanged) == (0, 1, 2)
    client, by_model = runs(uri)
    assert len(by_model) == 3 and len(client.search_runs([by_model["fp32"].info.experiment_id])) == 3
    ee = by_model["beexformer"]
    assert ee.data.metrics["accuracy"] == 0.90  # the new value is the run's latest
    assert [h.value for h in sorted(client.get_metric_history(ee.info.run_id, "accuracy"), key=lambda h: h.step)] == [0.80, 0.90]
    again = export(root, uri)
    assert (again.created, again.updated, again.unchanged) == (0, 0, 3)


@needs_mlflow
def test_a_changed_parameter_is_refused_unless_replace(store):
    root, uri = store
    write_run(root, "run-a", cells())
    export(root, uri)
    _, before = runs(uri)
    write_run(root, "run-a", cells(d_model=64)[:1])
    with pytest.raises(BeexError) as err:
        export(root, uri)
    msg = str(err.value)
    assert "\n" not in msg and "run-a/beexformer__rotten_tomatoes__cpu__seed0__default" in msg
    assert "config.encoder.d_model" in msg and "--replace" in msg
    _, after = runs(uri)
    assert after["beexformer"].info.run_id == before["beexformer"].info.run_id  # nothing written
    done = export(root, uri, replace=True)
    assert (done.replaced, done.unchanged) == (1, 2)
    _, replaced = runs(uri)
    assert len(replaced) == 3 and replaced["beexformer"].info.run_id != before["beexformer"].info.run_id
    assert replaced["beexformer"].data.params["config.encoder.d_model"] == "64"


def test_missing_mlflow_is_a_one_line_error_naming_the_extra(monkeypatch, tmp_path):
    from beexbench.results.mlflow_export import export_mlflow

    write_run(tmp_path / "res", "run-a", cells()[:1])
    monkeypatch.setitem(sys.modules, "mlflow", None)  # `import mlflow` raises ImportError
    monkeypatch.setitem(sys.modules, "mlflow.tracking", None)
    with pytest.raises(BeexError, match=r"pip install 'beexbench\[mlflow\]'") as err:
        export_mlflow([tmp_path / "res"], uri=f"sqlite:///{tmp_path / 'm.db'}")
    assert "\n" not in str(err.value) and not (tmp_path / "m.db").exists()


@pytest.mark.parametrize("uri, says", [("ftp://host/x", "unknown scheme"), ("sqlite://", "sqlite:///PATH.db"),
                                       ("sqlite:///{dir}", "is a folder"), ("sqlite:///{text}", "not an SQLite database"),
                                       ("file:{text}", "is a file"), ("http://", "http(s)://HOST")])
def test_a_bad_uri_is_a_one_line_error_before_anything_is_written(tmp_path, uri, says):
    from beexbench.results._mlflow import check_uri

    (tmp_path / "dir").mkdir()
    (tmp_path / "text").write_text("not a database")
    before = sorted(tmp_path.rglob("*"))
    with pytest.raises(BeexError) as err:
        check_uri(uri.format(dir=tmp_path / "dir", text=tmp_path / "text"))
    assert says in str(err.value) and "\n" not in str(err.value)
    assert sorted(tmp_path.rglob("*")) == before


def _cli(cmd, *args, cwd):
    return subprocess.run([*cmd, *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=300)


@needs_mlflow
def test_cli_exit_statuses(tmp_path):
    root = tmp_path / "res"
    write_run(root, "run-a", cells())
    uri = f"sqlite:///{tmp_path / 'store' / 'm.db'}"
    ok = _cli(CLI, "--results", root, "--to", "mlflow", "--mlflow-uri", uri, "--experiment", "ci", cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert "exported 3 cell(s)" in ok.stdout and "3 created" in ok.stdout
    write_run(root, "run-a", cells(d_model=64)[:1])
    refused = _cli(CLI, "--results", root, "--to", "mlflow", "--mlflow-uri", uri, "--experiment", "ci", cwd=tmp_path)
    assert refused.returncode == 2 and "--replace" in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
    bad = _cli(CLI, "--results", root, "--to", "mlflow", "--mlflow-uri", f"ftp://{tmp_path}/x", cwd=tmp_path)
    assert bad.returncode == 2 and "unknown scheme" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["res", "store"]  # nothing written by the refusals


def test_cli_without_the_extra_and_the_table_exports(tmp_path):
    root = tmp_path / "res"
    write_run(root, "run-a", cells()[:1])
    missing = _cli(NO_MLFLOW, "--results", root, "--to", "mlflow", "--mlflow-uri", f"sqlite:///{tmp_path / 'm.db'}",
                   cwd=tmp_path)
    assert missing.returncode == 2 and "pip install 'beexbench[mlflow]'" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1 and not (tmp_path / "m.db").exists()
    csv = _cli(CLI, "--results", root, "--out", tmp_path / "t.csv", cwd=tmp_path)  # the suffix still decides
    assert csv.returncode == 0 and (tmp_path / "t.csv").read_text().count("\n") == 2
    clash = _cli(CLI, "--results", root, "--to", "parquet", "--out", tmp_path / "u.csv", cwd=tmp_path)
    assert clash.returncode == 2 and "name a .parquet file" in clash.stderr
    stray = _cli(CLI, "--results", root, "--experiment", "x", cwd=tmp_path)
    assert stray.returncode == 2 and "--to mlflow" in stray.stderr
