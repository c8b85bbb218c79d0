"""Issue 15, data loss: the results store and model store never follow a symlinked lock,
never overwrite a cell on merge or resume, never let two cells share a file, write strict
JSON only, and leave nothing behind when a start or a write fails."""
from __future__ import annotations

import dataclasses
import errno
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from beexbench._io import LockBusy, exclusive_lock
from beexbench.config import load_config
from beexbench.errors import BeexError
from beexbench.results.merge import merge_runs
from beexbench.results.schema import CellKey, CellRecord
from beexbench.results.store import RunDir, load_records
from beexbench.runner import run_suite
from conftest import cli_status, write_tiny_csv, write_tiny_suite
from records import sample_metrics


# --------------------------------------------------------------------------- #
# helpers
# --------------------------------------------------------------------------- #
@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    """One finished run of the majority floor on the tiny task (about two seconds)."""
    base = tmp_path_factory.mktemp("base")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BEEXBENCH_CACHE", str(base / "cache"))
        cfg = load_config(config_file=write_tiny_suite(base, models=("majority",)), run_id="done")
        return run_suite(cfg).run_dir


def _copy_run(finished_run: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(finished_run, tmp_path / "s", symlinks=True))


def _snapshot(folder: Path) -> dict[str, bytes]:
    """Every file's bytes, but the lock file (empty whenever no process holds it)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and not p.is_symlink() and p.name != ".lock"}


def _record(key: CellKey, run_id: str, finished_at: str, accuracy: float) -> CellRecord:
    return CellRecord(key=key, run_id=run_id, metrics=sample_metrics(acc=accuracy),
                      started_at=finished_at, finished_at=finished_at)


def _strict_loads(text: str):
    def refuse(name):
        raise AssertionError(f"{name} in JSON")

    return json.loads(text, parse_constant=refuse)


K1 = CellKey("fp32", "sst2", "cpu", 0)
K2 = CellKey("fp32", "trec", "cpu", 0)


def _run_with(root: Path, run_id: str, *records: CellRecord, run_doc: dict | None = None) -> RunDir:
    run = RunDir(root / run_id)
    run.write_run(run_doc or {"run_id": run_id, "suite": "mine", "started_at": "2026-01-01T00:00:00+00:00"})
    for rec in records:
        run.write_cell(rec)
    return run


# --------------------------------------------------------------------------- #
# 1. lock files: never followed, dead owners recovered
# --------------------------------------------------------------------------- #
def test_resume_with_a_symlinked_lock_leaves_the_victim_alone(finished_run, tmp_path, capsys, monkeypatch):
    """Reproduction: cp -r RUN s; ln -sf "$PWD/victim.txt" s/.lock; beexbench run --resume s."""
    monkeypatch.setenv("BEEXBENCH_CACHE", str(tmp_path / "cache"))
    s = _copy_run(finished_run, tmp_path)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    (s / ".lock").unlink()
    (s / ".lock").symlink_to(victim)
    code, err = cli_status(capsys, ["run", "--resume", str(s)])
    assert code == 2 and "symlink" in err and "\n" not in err
    assert victim.read_text() == "precious\n"


def test_a_lock_symlinked_inside_the_run_is_not_followed_either(finished_run, tmp_path):
    s = _copy_run(finished_run, tmp_path)
    before = (s / "run.json").read_bytes()
    (s / ".lock").unlink()
    (s / ".lock").symlink_to(s / "run.json")  # inside the folder: only O_NOFOLLOW stops this one
    with pytest.raises(BeexError, match="symlink"):
        with RunDir(s).lock():
            pass
    assert (s / "run.json").read_bytes() == before


def test_a_lock_left_by_a_dead_process_is_recovered(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    run = RunDir(tmp_path / "r")
    run.path.mkdir()
    (run.path / ".lock").write_text(str(dead.pid))
    with run.lock():
        assert (run.path / ".lock").read_text().split()[0] == str(os.getpid())
    assert (run.path / ".lock").read_text() == ""  # released: no owner named


def test_a_live_holder_is_named_and_its_lock_recovered_after_kill_9(tmp_path):
    path = tmp_path / "x.lock"
    code = ("import sys, time\nfrom beexbench._io import exclusive_lock\n"
            "with exclusive_lock(sys.argv[1]):\n    print('held', flush=True)\n    time.sleep(120)\n")
    holder = subprocess.Popen([sys.executable, "-c", code, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(LockBusy) as busy:
            with exclusive_lock(path, timeout_s=0.3, poll_s=0.05):
                pass
        assert busy.value.owner == str(holder.pid) and f"process {holder.pid} on " in busy.value.holder
    finally:
        holder.kill()
        holder.wait()
    with exclusive_lock(path):  # the OS released the dead holder's lock
        assert path.read_text().split()[0] == str(os.getpid())


def test_a_busy_run_folder_says_who_holds_it(tmp_path):
    run = RunDir(tmp_path / "r")
    with run.lock():
        with pytest.raises(BeexError, match=rf"pid {os.getpid()}\).*--run-id"):
            with RunDir(run.path).lock():
                pass


# --------------------------------------------------------------------------- #
# 2. merge never overwrites
# --------------------------------------------------------------------------- #
def test_merge_into_an_existing_run_refuses_conflicts_and_changes_nothing(tmp_path, capsys):
    """Reproduction: results merge --results OLD --out EXISTING_RUN replaced run.json and newer cells."""
    existing = _run_with(tmp_path, "existing", _record(K1, "existing", "2026-02-01T00:00:00+00:00", 0.9))
    old = _run_with(tmp_path / "old", "old", _record(K1, "old", "2026-01-01T00:00:00+00:00", 0.5),
                    _record(K2, "old", "2026-01-01T00:00:00+00:00", 0.7))
    before = _snapshot(existing.path)
    code, err = cli_status(capsys, ["results", "merge", "--results", str(old.path), "--out", str(existing.path)])
    assert code == 2 and "conflict" in err and "--prefer newer" in err and "\n" not in err
    assert _snapshot(existing.path) == before


def test_merge_into_an_existing_run_adds_missing_cells_and_keeps_its_run_json(tmp_path):
    mine = _record(K1, "existing", "2026-02-01T00:00:00+00:00", 0.9)
    existing = _run_with(tmp_path, "existing", mine)
    source = _run_with(tmp_path / "src", "src", mine, _record(K2, "src", "2026-01-01T00:00:00+00:00", 0.7))
    run_json, k1_file = (existing.path / "run.json").read_bytes(), existing.cell_path(K1).read_bytes()
    n, notes = merge_runs([source.path], existing.path)
    assert n == 1 and notes == []
    assert (existing.path / "run.json").read_bytes() == run_json  # never replaced
    assert existing.cell_path(K1).read_bytes() == k1_file
    assert {r.key: r.metrics.accuracy.value for r in load_records([existing.path])} == {K1: 0.9, K2: 0.7}


def test_merge_prefer_newer_keeps_the_later_record_either_way(tmp_path):
    existing = _run_with(tmp_path, "existing", _record(K1, "existing", "2026-02-01T00:00:00+00:00", 0.9),
                         _record(K2, "existing", "2026-01-01T00:00:00+00:00", 0.1))
    source = _run_with(tmp_path / "src", "src", _record(K1, "src", "2026-01-01T00:00:00+00:00", 0.5),
                       _record(K2, "src", "2026-03-01T00:00:00+00:00", 0.8))
    n, notes = merge_runs([source.path], existing.path, prefer="newer")
    assert n == 1 and len(notes) == 2
    assert {r.key: r.run_id for r in load_records([existing.path])} == {K1: "existing", K2: "src"}
    with pytest.raises(BeexError, match="--prefer 'older' is not known"):
        merge_runs([source.path], existing.path, prefer="older")


def test_merge_refuses_two_sources_that_disagree(tmp_path):
    a = _run_with(tmp_path / "a", "a", _record(K1, "a", "2026-01-01T00:00:00+00:00", 0.5))
    b = _run_with(tmp_path / "b", "b", _record(K1, "b", "2026-02-01T00:00:00+00:00", 0.6))
    with pytest.raises(BeexError, match="1 cell\\(s\\) conflict"):
        merge_runs([a.path, b.path], tmp_path / "merged")
    assert not (tmp_path / "merged").exists()  # a refused merge leaves no folder
    n, notes = merge_runs([a.path, b.path], tmp_path / "merged", prefer="newer")
    assert n == 1 and "kept b (newer)" in notes[0]


# --------------------------------------------------------------------------- #
# 3. resume refuses what it cannot read
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("damage", ["newer-record", "corrupt-record", "newer-run"])
def test_resume_refuses_records_it_cannot_read_and_rewrites_nothing(finished_run, tmp_path, capsys, monkeypatch, damage):
    monkeypatch.setenv("BEEXBENCH_CACHE", str(tmp_path / "cache"))
    s = _copy_run(finished_run, tmp_path)
    (cell,) = (s / "cells").glob("*.json")
    if damage == "newer-record":
        doc = json.loads(cell.read_text())
        cell.write_text(json.dumps({**doc, "schema_version": doc["schema_version"] + 1, "status": "failed"}))
    elif damage == "corrupt-record":
        cell.write_text('{"schema": "beexbench-result", "sche')
    else:
        doc = json.loads((s / "run.json").read_text())
        (s / "run.json").write_text(json.dumps({**doc, "schema_version": doc["schema_version"] + 1, "finished_at": None}))
    before = _snapshot(s)
    code, err = cli_status(capsys, ["run", "--resume", str(s)])
    assert code == 2 and "\n" not in err
    if damage == "newer-run":  # refused where run.json is first read, before the run is opened
        assert err.startswith(f"error: {s / 'run.json'} has run schema version")
    else:
        assert err.startswith(f"error: cannot add to run {s} (nothing was changed)")
    assert ("upgrade beexbench" in err) if damage != "corrupt-record" else ("delete it" in err)
    assert _snapshot(s) == before


def test_has_cell_refuses_an_unreadable_record_instead_of_rerunning_it(tmp_path):
    run = RunDir(tmp_path / "r")
    path = run.write_cell(_record(K1, "r", "t", 0.5))
    path.write_text("{broken")
    with pytest.raises(BeexError, match="corrupt"):
        run.has_cell(K1)
    with pytest.raises(BeexError, match="corrupt"):
        run.write_cell(_record(K1, "r", "t", 0.6))
    assert path.read_text() == "{broken"


# --------------------------------------------------------------------------- #
# 4. a cell's file is identified by its full key
# --------------------------------------------------------------------------- #
def test_two_datasets_whose_names_sanitise_alike_both_run(tmp_path, monkeypatch):
    """Reproduction: --tasks 'csv:/d/dir with space/ok.csv?...,csv:/d/dir-with-space/ok.csv?...' ran only the first."""
    monkeypatch.setenv("BEEXBENCH_CACHE", str(tmp_path / "cache"))
    tasks = []
    for i, folder in enumerate(("dir with space", "dir-with-space")):
        (tmp_path / folder).mkdir()
        csv = write_tiny_csv(tmp_path / folder / "ok.csv", seed=i)
        tasks.append(f"csv:{csv}?text=text&label=label")
    cfg = load_config(config_file=write_tiny_suite(tmp_path, models=("majority",)), tasks=tasks, run_id="two")
    summary = run_suite(cfg)
    assert len(summary.written) == 2 and not summary.skipped and not summary.failed
    files = sorted((summary.run_dir / "cells").glob("*.json"))
    assert len(files) == 2
    assert sorted(r.key.task for r in load_records([summary.run_dir])) == sorted(tasks)
    again = run_suite(cfg, resume_dir=summary.run_dir)  # each is found again by its own key
    assert len(again.skipped) == 2 and not again.written


def test_a_file_holding_another_cell_is_a_collision_error(tmp_path):
    run = RunDir(tmp_path / "r")
    a, b = CellKey("m", "dir with space", "cpu"), CellKey("m", "dir-with-space", "cpu")
    assert a.slug != b.slug
    path = run.write_cell(_record(a, "r", "t", 0.5))
    os.replace(path, run.cell_path(b))  # a file named for b that holds a
    with pytest.raises(BeexError, match="holds another cell"):
        run.write_cell(_record(b, "r", "t", 0.6))
    with pytest.raises(BeexError, match="holds another cell"):
        run.has_cell(b)


def test_a_cell_under_an_older_file_name_is_found_and_replaced_not_duplicated(tmp_path):
    run = RunDir(tmp_path / "r")
    key = CellKey("m", "csv:/d/x.csv?name=t", "cpu")
    path = run.write_cell(CellRecord(key=key, run_id="r", status="failed", error="boom"))
    legacy = run.cells_dir / "m__csv-d-x.csv-name=t__cpu__seed0__default.json"  # the old sanitised name
    os.replace(path, legacy)
    cells = run.check_resumable()
    assert cells[key][0] == legacy
    run.write_cell(_record(key, "r", "t", 0.5), previous=cells[key][0])
    assert [p.name for p in run.cells_dir.iterdir()] == [path.name]


# --------------------------------------------------------------------------- #
# 6. strict JSON: null with a reason, never NaN or Infinity
# --------------------------------------------------------------------------- #
def test_non_finite_numbers_are_written_as_null_with_a_reason(tmp_path):
    from beexbench.report.frame import records_frame

    run = RunDir(tmp_path / "r")
    base = sample_metrics()
    metrics = dataclasses.replace(base, accuracy=dataclasses.replace(base.accuracy, value=math.nan, ci95=(math.nan, np.float32("inf"))),
                                  batch1=dataclasses.replace(base.batch1, median=-math.inf))
    path = run.write_cell(CellRecord(key=K1, run_id="r", metrics=metrics))
    doc = _strict_loads(path.read_text())
    assert doc["metrics"]["accuracy"]["value"] is None and doc["metrics"]["accuracy"]["ci95"] == [None, None]
    assert doc["metrics"]["batch1"]["median"] is None and doc["metrics"]["batch1"]["n"] == 3
    assert doc["null_reasons"] == {"/metrics/accuracy/value": "not a number (NaN)",
                                   "/metrics/accuracy/ci95/0": "not a number (NaN)",
                                   "/metrics/accuracy/ci95/1": "infinite (+inf)",
                                   "/metrics/batch1/median": "infinite (-inf)"}
    (rec,) = load_records([tmp_path])  # the report reads it: each null its non-finite number again
    assert rec.null_reasons == doc["null_reasons"]
    assert math.isnan(rec.metrics.accuracy.value) and rec.metrics.accuracy.ci95[1] == math.inf
    assert rec.metrics.batch1.median == -math.inf
    text = path.read_text()
    run.write_cell(rec)  # written again: the same file, reasons included
    assert path.read_text() == text
    row = records_frame([rec]).iloc[0]
    assert pd.isna(row["accuracy"]) and pd.isna(row["latency_ms"]) and row["status"] == "ok"  # shown as missing
    run.write_run({"config": {"model": {"train": {"lr": math.inf}}}})
    assert _strict_loads((run.path / "run.json").read_text())["null_reasons"] == {"/config/model/train/lr": "infinite (+inf)"}


def test_checkpoint_metadata_is_strict_json(tmp_path):
    import torch

    from beexbench.adapters.checkpoint import META, read_meta, write_checkpoint

    write_checkpoint(tmp_path / "ck", "fp32", {"w": torch.zeros(2)}, {"fit": {"loss": math.nan}})
    doc = _strict_loads((tmp_path / "ck" / META).read_text())
    assert doc["fit"]["loss"] is None and doc["null_reasons"] == {"/fit/loss": "not a number (NaN)"}
    assert read_meta(tmp_path / "ck")["fit"] == {"loss": None}


# --------------------------------------------------------------------------- #
# 7. failures leave nothing behind
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("failure", [BeexError("the dataset is broken: fix it"), KeyboardInterrupt()])
def test_a_run_that_fails_before_any_cell_leaves_no_run_folder(tmp_path, monkeypatch, failure):
    monkeypatch.setenv("BEEXBENCH_CACHE", str(tmp_path / "cache"))
    import beexbench.runner.run as run_module

    def broken(*args, **kwargs):
        raise failure

    monkeypatch.setattr(run_module, "load_task", broken)
    cfg = load_config(config_file=write_tiny_suite(tmp_path, models=("majority",)), run_id="fails")
    with pytest.raises(type(failure)):
        run_suite(cfg)
    assert not (tmp_path / "results" / "fails").exists()


def test_a_failing_resume_keeps_the_existing_run(finished_run, tmp_path, monkeypatch):
    monkeypatch.setenv("BEEXBENCH_CACHE", str(tmp_path / "cache"))
    import beexbench.runner.run as run_module

    s = _copy_run(finished_run, tmp_path)
    next((s / "cells").glob("*.json")).unlink()  # one cell to redo
    monkeypatch.setattr(run_module, "load_task", lambda *a, **k: (_ for _ in ()).throw(BeexError("broken")))
    cfg = load_config(config_file=write_tiny_suite(tmp_path, models=("majority",)))
    with pytest.raises(BeexError, match="broken"):
        run_suite(cfg, resume_dir=s)
    assert (s / "run.json").is_file()


def test_a_full_disk_leaves_no_temp_folders_in_the_model_store(tmp_path, monkeypatch):
    monkeypatch.setenv("BEEXBENCH_CACHE", str(tmp_path / "cache"))
    import beexbench.adapters.checkpoint as checkpoint

    def disk_full(tensors, filename, *args, **kwargs):
        Path(filename).write_bytes(b"half a checkpoint")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint, "save_file", disk_full)
    cfg = load_config(config_file=write_tiny_suite(tmp_path, models=("majority",)), run_id="full")
    summary = run_suite(cfg)
    assert summary.failed and "No space left" in summary.failed[0][1]
    store = tmp_path / "models"
    assert not [p for p in store.rglob("*") if "tmp" in p.name], sorted(store.rglob("*"))
    assert not list(store.rglob("checkpoint.json"))
