"""Issue 14: a plugin on the bare ``ModelAdapter`` (not ``EncoderAdapter``) - tests/plugin_pkg's
``example-bare-exits``, registered through the ``beexbench.adapters`` entry point - gets what a
built-in gets: the suite's [model] settings and the seed, exit measurements, and its declared role
in the report (read from the records: the report runs without the plugin installed)."""
from __future__ import annotations

import csv
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from beexbench.adapters.base import ModelAdapter, TaskSpec
from beexbench.adapters.encoder_adapter import EncoderAdapter
from beexbench.adapters.registry import ADAPTERS, create_model, register_model
from beexbench.config import load_config
from beexbench.report import build_report, default_tables_dir
from beexbench.runner.models import overrides_for
from conftest import write_tiny_suite

PLUGIN_DIR = Path(__file__).parent / "plugin_pkg"
MODEL = "example-bare-exits"
SPEC = TaskSpec("t", 2, vocab_size=40, max_len=12)


def _plugin_class() -> type[ModelAdapter]:
    """The plugin's class, imported from its file (the test process's entry points stay as they are)."""
    path = PLUGIN_DIR / "beex_example_plugin" / "bare.py"
    module_spec = importlib.util.spec_from_file_location("beex_example_plugin_bare", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module.ResidualMLPExits


@pytest.fixture
def bare():
    ADAPTERS.unregister(MODEL)
    cls = register_model(MODEL)(_plugin_class())
    yield cls
    ADAPTERS.unregister(MODEL)


def test_the_plugin_is_a_bare_model_adapter(bare):
    assert issubclass(bare, ModelAdapter) and not issubclass(bare, EncoderAdapter)


def test_it_gets_the_suite_settings_and_the_seed(bare, tmp_path):
    cfg = load_config(config_file=write_tiny_suite(tmp_path, models=(MODEL,)))
    overrides = overrides_for(MODEL, cfg, 3)
    assert overrides["encoder"]["d_model"] == 16 and overrides["train"] == {"epochs": 1, "batch_size": 32, "seed": 3}
    model = create_model(MODEL, SPEC, cfg.model, seed=3)
    assert model.config["encoder"]["d_model"] == 16 and model.config["train"]["seed"] == 3
    assert len(model.module().blocks) == 3 and model.module().tok.embedding_dim == 16


def test_it_builds_what_the_runner_trains(bare, tmp_path, monkeypatch):
    """The runner's first weights for a seed are create_model's for that seed, and depend on it."""
    from beexbench.runner import models as store

    cfg = load_config(config_file=write_tiny_suite(tmp_path, models=(MODEL,)))
    seen = {}

    def fit(self, *args, **kwargs):
        seen["state"] = {k: v.clone() for k, v in self.module().state_dict().items()}
        raise RuntimeError("stop after build")

    monkeypatch.setattr(bare, "fit", fit)
    with pytest.raises(RuntimeError, match="stop after build"):
        store.obtain_model(MODEL, SPEC, None, None, cfg, 5)
    again = create_model(MODEL, SPEC, cfg.model, seed=5).module().state_dict()
    other = create_model(MODEL, SPEC, cfg.model, seed=6).module().state_dict()
    assert seen["state"].keys() == again.keys()
    assert all(torch.equal(seen["state"][k], again[k]) for k in again)
    assert not all(torch.equal(again[k], other[k]) for k in again)


def _run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "BEEXBENCH_CACHE": str(tmp_path / "cache"),
           "PYTHONPATH": os.pathsep.join(p for p in (str(PLUGIN_DIR), os.environ.get("PYTHONPATH")) if p)}
    return subprocess.run([sys.executable, "-c", "from beexbench.cli import main; main()", *args],
                          capture_output=True, text=True, env=env, timeout=500)


@pytest.mark.timeout(600)
def test_through_the_entry_point_it_gets_exit_measurements_and_its_role(tmp_path):
    """The real CLI with the plugin installed (PYTHONPATH + its .dist-info); the report is built
    here, where the plugin is not installed: its role comes from the records."""
    suite = write_tiny_suite(tmp_path, models=("beexformer", MODEL))
    listed = _run(tmp_path, "list", "models", "--format", "json")
    assert listed.returncode == 0, listed.stderr
    models = {m["name"]: m for m in json.loads(listed.stdout)["models"]}
    assert models[MODEL]["origin"] == "entry-point:beex-example-plugin" and models[MODEL]["role"] == "ablation of beexformer"
    out = _run(tmp_path, "run", "--config", str(suite), "--run-id", "bare", "--format", "json")
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    cells = {json.loads(p.read_text())["key"]["model"]: json.loads(p.read_text())
             for p in (tmp_path / "results" / "bare" / "cells").glob("*.json")}
    rec = cells[MODEL]
    assert rec["status"] == "ok" and rec["model"]["role"] == "ablation of beexformer"
    config = rec["model"]["config"]
    assert config["encoder"]["d_model"] == 16 and config["encoder"]["n_blocks"] == 3  # the suite's [model.encoder]
    assert config["train"]["seed"] == 0 and config["train"]["epochs"] == 1  # the seed and the suite's [model.train]
    exits = rec["metrics"]["exits"]
    assert exits["n_exits"] == 3 and exits["n_blocks"] == 3 and sum(exits["histogram"]) == rec["metrics"]["accuracy"]["n"]
    assert exits["rule"]["rule"] == "absolute-entropy" and exits["rule"]["threshold"] == exits["calibration"]["chosen"]
    assert len(exits["test_sweep"]) == 4 and len(exits["accuracy_if_all_exit_at"]) == 3
    assert rec["metrics"]["ops"]["uncounted"] == {} and len(rec["metrics"]["ops"]["per_depth_at_mean_length"]) == 3

    html = build_report(tmp_path / "results", tmp_path / "report.html").read_text()
    assert "<h3>Ablations</h3>" in html
    tables = default_tables_dir(tmp_path / "report.html")
    assert "## Ablations (Δ against the full model: beexformer)" in (tables / "tables.md").read_text()
    with open(tables / "ablation.csv", newline="") as f:
        ablation = {r["model"]: r for r in csv.DictReader(f)}
    label = f"{MODEL} (tiny)"  # the suite's name labels its models
    assert set(ablation) == {"beexformer (tiny)", label} and ablation[label]["reference"] == "beexformer"
    with open(tables / "summary.csv", newline="") as f:
        roles = {r["model"]: r["role"] for r in csv.DictReader(f)}
    assert roles == {"beexformer (tiny)": "subject", label: "ablation of beexformer"}
