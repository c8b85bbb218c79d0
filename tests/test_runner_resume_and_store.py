"""Durability: a run killed mid-way resumes without losing or repeating a cell; merged runs;
refusal of an incompatible model store; portable store used without retraining."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from beexbench.config import load_config
from beexbench.errors import BeexError
from beexbench.results.merge import merge_runs
from beexbench.results.store import load_records
from beexbench.runner import run_suite
from conftest import write_tiny_suite


def _cells(results: Path) -> dict[str, dict]:
    return {p.name: json.loads(p.read_text()) for p in results.glob("*/cells/*.json")}


def test_killed_run_resumes_without_losing_or_repeating_cells(tmp_path):
    suite = write_tiny_suite(tmp_path, models=("beexformer", "fp32", "transformer"))
    env = {**os.environ, "BEEXBENCH_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "beexbench.cli", "run", "--config", str(suite), "--threads", "1"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    results = tmp_path / "results"
    deadline = time.time() + 240
    while time.time() < deadline and not _cells(results):
        time.sleep(0.2)
        assert proc.poll() is None, "the run ended before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)  # kill -9, mid-run
    proc.wait()
    before = _cells(results)
    assert 1 <= len(before) < 3, "kill should land after the first cell and before the last"
    assert not list(results.glob("*/cells/*.tmp")) and not list(results.glob("*/cells/.*.tmp"))

    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stderr[-2000:]
    after = _cells(results)
    assert len(after) == 3 and len(list(results.iterdir())) == 1  # same run folder, all cells
    for name, rec in before.items():  # finished cells were not re-run
        assert after[name]["finished_at"] == rec["finished_at"]
        assert after[name]["metrics"]["batch1"]["values"] == rec["metrics"]["batch1"]["values"]


def test_merge_runs_from_two_targets(tmp_path, monkeypatch):
    monkeypatch.setenv("BEEXBENCH_CACHE", str(tmp_path / "cache"))
    a = run_suite(load_config(config_file=write_tiny_suite(tmp_path, models=("fp32",)), run_id="cpu-run"))
    b = run_suite(load_config(config_file=write_tiny_suite(tmp_path, models=("fp32",), target="edge-1t"), run_id="edge-run"))
    n, notes = merge_runs([a.run_dir, b.run_dir], tmp_path / "merged")
    assert n == 2 and notes == []
    recs = load_records([tmp_path / "merged"])
    assert sorted(r.key.target for r in recs) == ["cpu", "edge-1t"]
    edge = next(r for r in recs if r.key.target == "edge-1t")
    assert edge.target["emulated"] is True and edge.metrics.batch1.threads == 1
    # the edge run reused the cpu run's checkpoint (same model, task, config, seed)
    assert edge.model["trained_this_run"] is False
    # a run given twice is read once: one copy of each cell, one source
    n, notes = merge_runs([a.run_dir, a.run_dir], tmp_path / "merged2")
    assert n == 1 and notes == []
    assert json.loads((tmp_path / "merged2" / "run.json").read_text())["merged_from"] == ["cpu-run"]
    # the same cell in two runs (here: a copy of the run) keeps one and says so
    shutil.copytree(a.run_dir, tmp_path / "copy")
    n, notes = merge_runs([a.run_dir, tmp_path / "copy"], tmp_path / "merged3")
    assert n == 1 and len(notes) == 1 and "kept one" in notes[0]


def test_portable_store_and_incompatible_store(tmp_path, monkeypatch):
    monkeypatch.setenv("BEEXBENCH_CACHE", str(tmp_path / "cache"))
    from beexbench.runner.train import train_suite

    cfg = load_config(config_file=write_tiny_suite(tmp_path, models=("fp32",)), models_dir=str(tmp_path / "store"))
    trained = train_suite(cfg)
    (ckpt,), failed = trained.written, trained.failed
    assert failed == []
    assert (tmp_path / "store" / "STORE.json").is_file()
    moved = tmp_path / "copied-store"
    os.rename(tmp_path / "store", moved)  # "another machine"
    cfg2 = load_config(config_file=write_tiny_suite(tmp_path, models=("fp32",)), models_from=str(moved))
    summary = run_suite(cfg2)
    (rec,) = [r for r in load_records([summary.run_dir])]
    assert rec.model["trained_this_run"] is False and str(moved) in rec.model["checkpoint"]
    manifest = moved / "STORE.json"
    doc = json.loads(manifest.read_text())
    manifest.write_text(json.dumps({**doc, "store_version": 99, "beexbench_version": "9.0"}))
    with pytest.raises(BeexError, match="made by beexbench 9.0"):
        run_suite(load_config(config_file=write_tiny_suite(tmp_path, models=("fp32",)), models_from=str(moved), run_id="x"))
    with pytest.raises(BeexError, match="not a beexbench model store"):
        run_suite(load_config(config_file=write_tiny_suite(tmp_path, models=("fp32",)), models_from=str(tmp_path), run_id="y"))


def test_initial_weights_depend_on_the_seed_only():
    """Before training, a cell's model must not depend on what consumed the global RNG earlier
    (other cells, or none when a run is resumed in a fresh process)."""
    import torch

    from beexbench.adapters.base import TaskSpec
    from beexbench.runner.models import build_seeded

    spec = TaskSpec(task="t", num_labels=2, vocab_size=40, max_len=8)
    tiny = {"encoder": {"d_model": 16, "n_heads": 2, "n_blocks": 2, "d_ff": 16}}
    first = build_seeded("fp32", tiny, spec, seed=0).module().state_dict()
    torch.rand(1000)  # another cell's work in between
    again = build_seeded("fp32", tiny, spec, seed=0).module().state_dict()
    other = build_seeded("fp32", tiny, spec, seed=1).module().state_dict()
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not torch.equal(first["blocks.0.attn.q.weight"], other["blocks.0.attn.q.weight"])
