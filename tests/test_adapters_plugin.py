"""A third-party package adds a model through the ``beexbench.adapters`` entry point
(tests/plugin_pkg: its own pyproject, plus a checked-in .dist-info so that putting the
folder on PYTHONPATH is the same as ``pip install``-ing it), without touching beexbench."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

PLUGIN_DIR = Path(__file__).parent / "plugin_pkg"
MODEL = "example-w1a32-gelu"


def beexbench(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    environ = {**os.environ, **(env or {})}
    environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(PLUGIN_DIR), environ.get("PYTHONPATH")) if p)
    return subprocess.run(
        [sys.executable, "-c", "from beexbench.cli import main; main()", *args],
        capture_output=True, text=True, env=environ, timeout=timeout,
    )


def test_plugin_model_is_listed():
    out = beexbench("list", "models", "--format", "json")
    assert out.returncode == 0, out.stderr
    models = {m["name"]: m for m in json.loads(out.stdout)["models"]}
    assert MODEL in models
    assert models[MODEL]["origin"] == "entry-point:beex-example-plugin"
    assert models[MODEL]["description"].startswith("Example plugin: binarized weights (W1A32)")


def test_plugin_model_is_absent_without_the_package():
    out = subprocess.run([sys.executable, "-c", "from beexbench.adapters.registry import list_models; print(list_models())"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert MODEL not in out.stdout


def test_plugin_model_builds_and_round_trips(tmp_path):
    code = (
        "import torch, sys\n"
        "from beexbench.adapters.base import TaskSpec\n"
        "from beexbench.adapters.registry import create_model, load_model\n"
        f"m = create_model('{MODEL}', TaskSpec('t', 2, 30, 8), {{'encoder': {{'d_model': 16, 'n_heads': 2, 'n_blocks': 2, 'd_ff': 32}}}})\n"
        "ids = torch.randint(1, 30, (2, 8)); mask = torch.ones(2, 8, dtype=torch.bool)\n"
        "m.save(sys.argv[1]); l = load_model(sys.argv[1])\n"
        "assert type(l).name == m.name\n"
        "assert torch.equal(m.forward(ids, mask)[-1], l.forward(ids, mask)[-1])\n"
        "assert {b for n, b in m.precision().params.items() if n.endswith('attn.q.weight')} == {1}\n"
        "print('ok')\n"
    )
    env = {**os.environ, "PYTHONPATH": str(PLUGIN_DIR)}
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


@pytest.mark.timeout(600)
def test_plugin_model_runs_through_the_smoke_suite(tmp_path):
    """End to end: data (downloaded from the package registry into a fresh cache), training,
    measurement and results for the plugged-in model only."""
    results = tmp_path / "results"
    out = beexbench(
        "run", "--models", MODEL, "--suite", "smoke", "--limit", "60", "--no-floors",
        "--results", str(results), "--models-dir", str(tmp_path / "models"), "--run-id", "plugin",
        env={"BEEXBENCH_CACHE": str(tmp_path / "cache")}, timeout=580,
    )
    if out.returncode != 0 and "download" in out.stderr.lower() and "network" in out.stderr.lower():
        pytest.skip(f"the package registry is unreachable: {out.stderr.strip().splitlines()[-1]}")
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    cells = sorted((results / "plugin" / "cells").glob("*.json"))
    assert cells, f"no result cells in {results / 'plugin'}"
    docs = [json.loads(c.read_text()) for c in cells]
    assert any(MODEL in json.dumps(d) for d in docs)
    assert (tmp_path / "models" / "rotten_tomatoes" / MODEL).is_dir()
