"""The results store under races and unreadable inputs (issue 26): a merge takes ``--out``'s lock
before it looks at it, so one that loses a race replaces nothing; a run.json of a newer schema is
refused by every command that reads runs; ``--results`` naming a file is a one-line error; export
writes each cell once; a garbled run.json's advice leads to a command that works."""
from __future__ import annotations

import csv
import io
import json
import multiprocessing
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from beexbench.cli import main
from beexbench.config import load_config
from beexbench.errors import BeexError
from beexbench.results.merge import merge_runs
from beexbench.results.schema import CellKey, CellRecord
from beexbench.results.store import RunDir, load_records
from beexbench.runner import run_suite
from conftest import cli_status, write_tiny_suite
from records import sample_metrics

K1 = CellKey("fp32", "sst2", "cpu", 0)
K2 = CellKey("fp32", "trec", "cpu", 0)
CLI = [sys.executable, "-m", "beexbench.cli"]


def _record(key: CellKey, run_id: str, finished_at: str, accuracy: float) -> CellRecord:
    return CellRecord(key=key, run_id=run_id, metrics=sample_metrics(acc=accuracy), started_at=finished_at,
                      finished_at=finished_at)


def _run_with(folder: Path, *records: CellRecord) -> RunDir:
    run = RunDir(folder)
    run.write_run({"run_id": folder.name, "suite": "mine", "started_at": "2026-01-01T00:00:00+00:00"})
    for rec in records:
        run.write_cell(rec)
    return run


def _snapshot(folder: Path) -> dict[str, bytes]:
    """Every file's bytes, but the lock file's (it names its holder while held)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != ".lock"}


def _sources(tmp_path: Path) -> tuple[RunDir, RunDir]:
    """Two runs whose K1 differ (0.5 vs 0.6); the second also has K2."""
    a = _run_with(tmp_path / "src-a" / "a", _record(K1, "a", "2026-01-01T00:00:00+00:00", 0.5))
    b = _run_with(tmp_path / "src-b" / "b", _record(K1, "b", "2026-01-02T00:00:00+00:00", 0.6),
                  _record(K2, "b", "2026-01-02T00:00:00+00:00", 0.7))
    return a, b


# --------------------------------------------------------------------------- #
# defect 2: concurrent merges
# --------------------------------------------------------------------------- #
def test_a_merge_that_a_finished_merge_overtook_replaces_nothing(tmp_path, monkeypatch):
    """Reproduction of the lost update: merge B starts on an empty --out, merge A (a real process)
    writes it and ends before B takes the lock. B must plan against A's run: a conflict, nothing replaced."""
    a, b = _sources(tmp_path)
    out = tmp_path / "merged"
    real_lock = RunDir.lock
    overtaken = []

    def lock_after_a_finished(self, **kwargs):
        if self.path == out and not overtaken:
            done = subprocess.run([*CLI, "results", "merge", "--results", str(a.path), "--out", str(out)],
                                  capture_output=True, text=True, timeout=300)
            assert done.returncode == 0, done.stderr
            overtaken.append(_snapshot(out))
        return real_lock(self, **kwargs)

    monkeypatch.setattr(RunDir, "lock", lock_after_a_finished)
    with pytest.raises(BeexError, match=r"1 cell\(s\) conflict, e\.g\. .* differs between a and b: nothing was merged"):
        merge_runs([b.path], out)
    assert overtaken and _snapshot(out) == overtaken[0]  # A's cell and run.json, byte for byte
    assert json.loads((out / "run.json").read_text())["merged_from"] == ["a"]
    assert {r.key: r.metrics.accuracy.value for r in load_records([out])} == {K1: 0.5}


def test_a_merge_into_an_out_being_written_is_a_conflict_error_and_writes_nothing(tmp_path):
    """While another process holds --out (here this test, with a real lock), a merge (the console
    script) is refused in one line naming the holder, and nothing the holder wrote is touched."""
    _, b = _sources(tmp_path)
    out = RunDir(tmp_path / "merged")
    with out.lock():
        out.write_cell(_record(K1, "winner", "2026-03-01T00:00:00+00:00", 0.9))  # the winner, mid-merge: no run.json yet
        before = _snapshot(out.path)
        done = subprocess.run([*CLI, "results", "merge", "--results", str(b.path), "--out", str(out.path)],
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 2, done.stderr
        err = done.stderr.strip()
        assert "\n" not in err and "Traceback" not in err
        assert f"is being written by another beexbench process (pid {os.getpid()}): nothing was merged" in err
        assert "not a beexbench run folder" not in err
        assert _snapshot(out.path) == before
        out.write_run({"run_id": "merged", "suite": "merged"})
        before = _snapshot(out.path)
    # once the winner is done, the same merge is an ordinary merge into its run: K1 differs, refused
    done = subprocess.run([*CLI, "results", "merge", "--results", str(b.path), "--out", str(out.path)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "1 cell(s) conflict" in done.stderr and _snapshot(out.path) == before


def _race_one(sources: list[str], out: str, barrier, report: str) -> None:  # pragma: no cover - runs in a child
    barrier.wait()
    try:
        merge_runs([Path(s) for s in sources], Path(out))
        Path(report).write_text("ok")
    except BeexError as exc:
        Path(report).write_text(f"error: {exc}")


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="needs fork")
def test_two_racing_merges_one_wins_whole_and_the_other_is_refused(tmp_path):
    """Two processes released together by a barrier merge different runs into one new --out,
    several times: each time exactly one wins, the other is refused with a conflict (busy or a
    differing cell), and --out holds exactly the winner's cells and run.json."""
    a, b = _sources(tmp_path)
    ctx = multiprocessing.get_context("fork")
    outcomes = set()
    for i in range(8):
        out = tmp_path / f"merged{i}"
        barrier = ctx.Barrier(2)
        reports = [tmp_path / f"r{i}-a", tmp_path / f"r{i}-b"]
        procs = [ctx.Process(target=_race_one, args=([str(src.path)], str(out), barrier, str(rep)))
                 for src, rep in zip((a, b), reports)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(120)
            assert p.exitcode == 0
        said = [rep.read_text() for rep in reports]
        assert sorted(s == "ok" for s in said) == [False, True], said
        winner = "a" if said[0] == "ok" else "b"
        loser = said[1] if winner == "a" else said[0]
        assert "nothing was merged" in loser and "not a beexbench run folder" not in loser, loser
        outcomes.add("busy" if "being written" in loser else "conflict")
        assert json.loads((out / "run.json").read_text())["merged_from"] == [winner]
        want = {K1: 0.5} if winner == "a" else {K1: 0.6, K2: 0.7}
        assert {r.key: r.metrics.accuracy.value for r in load_records([out])} == want
    print("losers met:", sorted(outcomes))  # which of the two depends on timing; both are refusals


def test_merge_into_a_folder_with_cells_but_no_run_json_keeps_its_cells(tmp_path):
    """A merge that died between its cells and its run.json (or a run whose run.json was moved
    away) is added to, never planned as empty: a differing cell is a conflict."""
    a, b = _sources(tmp_path)
    out = RunDir(tmp_path / "merged")
    out.write_cell(_record(K1, "earlier", "2026-05-01T00:00:00+00:00", 0.9))
    before = _snapshot(out.path)
    with pytest.raises(BeexError, match="conflict"):
        merge_runs([b.path], out.path)
    assert _snapshot(out.path) == before
    n, _ = merge_runs([b.path], out.path, prefer="newer")  # K1 here is newer: kept; K2 added
    assert n == 1 and {r.key: r.metrics.accuracy.value for r in load_records([out.path])} == {K1: 0.9, K2: 0.7}
    assert (out.path / "run.json").is_file()


def test_merge_into_a_foreign_folder_or_a_file_is_refused(tmp_path, capsys):
    a, _ = _sources(tmp_path)
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "cat.jpg").write_bytes(b"\xff\xd8")
    code, err = cli_status(capsys, ["results", "merge", "--results", str(a.path), "--out", str(foreign)])
    assert code == 2 and "exists and is not a beexbench run folder (it holds 'cat.jpg')" in err and "\n" not in err
    assert sorted(p.name for p in foreign.iterdir()) == ["cat.jpg"]  # not even a lock file
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    code, err = cli_status(capsys, ["results", "merge", "--results", str(a.path), "--out", str(plain)])
    assert code == 2 and "is a file, not a run folder" in err and plain.read_text() == "x"


# --------------------------------------------------------------------------- #
# defect 10: a newer run.json is refused everywhere
# --------------------------------------------------------------------------- #
def _newer(run: RunDir) -> None:
    doc = json.loads((run.path / "run.json").read_text())
    (run.path / "run.json").write_text(json.dumps({**doc, "schema_version": doc["schema_version"] + 1}))


@pytest.mark.parametrize("command", ["list", "merge", "export", "report", "merge-into"])
def test_a_newer_run_json_is_refused_by_every_command(tmp_path, capsys, command):
    a, b = _sources(tmp_path)
    _newer(a)
    before = _snapshot(tmp_path)
    argv = {"list": ["results", "list", "--results", str(a.path)],
            "merge": ["results", "merge", "--results", str(a.path), "--out", str(tmp_path / "m")],
            "export": ["results", "export", "--results", str(a.path), "--out", str(tmp_path / "x.csv")],
            "report": ["report", "--results", str(a.path), "--out", str(tmp_path / "rep" / "r.html")],
            "merge-into": ["results", "merge", "--results", str(b.path), "--out", str(a.path)]}[command]
    code, err = cli_status(capsys, argv)
    assert code == 2 and "\n" not in err
    assert err.startswith(f"error: {a.path / 'run.json'} has run schema version ") and err.endswith("upgrade beexbench")
    assert _snapshot(tmp_path) == before and not (tmp_path / "m").exists() and not (tmp_path / "x.csv").exists()


# --------------------------------------------------------------------------- #
# defect 12: --results naming a file
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("command", ["list", "merge", "export", "report"])
def test_results_naming_a_regular_file_is_a_one_line_error(tmp_path, command):
    plain = tmp_path / "notes.txt"
    plain.write_text("not a folder\n")
    argv = {"list": ["results", "list"], "merge": ["results", "merge", "--out", str(tmp_path / "m")],
            "export": ["results", "export", "--out", str(tmp_path / "x.csv")],
            "report": ["report", "--out", str(tmp_path / "r.html")]}[command]
    done = subprocess.run([*CLI, *argv, "--results", str(plain)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip() == f"error: --results {plain} is a file, not a folder: pass a results folder or a run folder"


# --------------------------------------------------------------------------- #
# defect 13: export writes each cell once; the garbled-run.json advice works
# --------------------------------------------------------------------------- #
def _rows(path: Path) -> list[dict]:
    return list(csv.DictReader(io.StringIO(path.read_text())))


def test_export_writes_a_run_linked_twice_once(tmp_path, capsys):
    root = tmp_path / "results"
    run = _run_with(root / "r1", _record(K1, "r1", "2026-01-01T00:00:00+00:00", 0.5),
                    _record(K2, "r1", "2026-01-01T00:00:00+00:00", 0.7))
    (root / "r1-link").symlink_to(run.path, target_is_directory=True)
    out = tmp_path / "x.csv"
    code, err = cli_status(capsys, ["results", "export", "--results", str(root), "--results", str(run.path), "--out", str(out)])
    assert code == 0, err
    rows = _rows(out)
    assert sorted((r["task"], r["accuracy"]) for r in rows) == [("sst2", "0.5"), ("trec", "0.7")]
    code, _ = cli_status(capsys, ["results", "list", "--results", str(root), "--format", "json"])
    assert code == 0


def test_export_keeps_one_record_per_cell_key_across_runs_and_says_which(tmp_path, capsys):
    root = tmp_path / "results"
    _run_with(root / "old", _record(K1, "old", "2026-01-01T00:00:00+00:00", 0.5))
    _run_with(root / "new", _record(K1, "new", "2026-02-01T00:00:00+00:00", 0.6))
    failed = RunDir(root / "zfailed")
    failed.write_run({"run_id": "zfailed"})
    failed.write_cell(CellRecord(key=K1, run_id="zfailed", status="failed", error="boom",
                                 finished_at="2026-03-01T00:00:00+00:00"))
    out = tmp_path / "x.csv"
    with pytest.raises(SystemExit) as ended:
        main(["results", "export", "--results", str(root), "--out", str(out)])
    printed = capsys.readouterr().out
    assert ended.value.code == 0
    rows = _rows(out)
    assert [(r["run_id"], r["accuracy"]) for r in rows] == [("new", "0.6")]  # newest finished; a failed one never wins
    assert "exported new's record, not old's (older)" in printed
    assert "exported new's record, not zfailed's (failed)" in printed


def test_the_advice_for_a_garbled_run_json_names_a_command_that_works(tmp_path):
    run = _run_with(tmp_path / "results" / "r1", _record(K1, "r1", "2026-01-01T00:00:00+00:00", 0.5),
                    _record(K2, "r1", "2026-01-01T00:00:00+00:00", 0.7))
    (run.path / "run.json").write_text('{"schema": "beexbench-run", "sche')
    done = subprocess.run([*CLI, "results", "list", "--results", str(run.path)], capture_output=True, text=True, timeout=300)
    err = done.stderr.strip()
    assert done.returncode == 2 and "\n" not in err and "is corrupt" in err
    moved = re.search(r"move it out of the folder \(e\.g\. to (\S+) beside it\)", err)
    command = re.search(r"`(beexbench results merge [^`]+)`", err)
    assert moved and command, err
    # follow the advice, to the letter
    (run.path / "run.json").rename(run.path.parent / moved.group(1))
    new_run = tmp_path / "results" / "r1-recovered"
    argv = shlex.split(command.group(1).replace("NEW_RUN", shlex.quote(str(new_run))))
    done = subprocess.run([*CLI, *argv[1:]], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert {r.key: r.metrics.accuracy.value for r in load_records([new_run])} == {K1: 0.5, K2: 0.7}
    done = subprocess.run([*CLI, "results", "list", "--results", str(tmp_path / "results"), "--format", "json"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert sorted(r["run_id"] for r in json.loads(done.stdout)) == ["r1", "r1-recovered"]


def test_following_the_garbled_run_json_advice_lets_resume_finish_the_run(tmp_path, monkeypatch):
    """The whole way: a real run (one model of two), its run.json garbled, the advice followed;
    `run --resume NEW_RUN --config` then runs only the missing cell and keeps the saved one."""
    monkeypatch.setenv("BEEXBENCH_CACHE", str(tmp_path / "cache"))
    suite = write_tiny_suite(tmp_path, models=("majority", "bow-linear"))
    first = run_suite(load_config(config_file=suite, models=["majority"], run_id="r1")).run_dir
    (saved,) = first.glob("cells/*.json")
    (first / "run.json").write_text("\x00garbled")
    done = subprocess.run([*CLI, "run", "--resume", str(first)], capture_output=True, text=True, timeout=300)
    err = done.stderr.strip()
    assert done.returncode == 2 and "\n" not in err and "is corrupt" in err, err
    moved = re.search(r"to (\S+) beside it", err).group(1)
    merge = re.search(r"`(beexbench results merge [^`]+)`", err).group(1)
    assert re.search(r"`beexbench run --resume NEW_RUN` with the run's --suite or --config finishes", err)
    (first / "run.json").rename(first.parent / moved)
    new_run = first.parent / "r1-recovered"
    merge_argv = shlex.split(merge.replace("NEW_RUN", shlex.quote(str(new_run))))[1:]
    for argv in (merge_argv, ["run", "--resume", str(new_run), "--config", str(suite)]):
        done = subprocess.run([*CLI, *argv], capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
    records = {r.key.model: r for r in load_records([new_run])}
    assert sorted(records) == ["bow-linear", "majority"] and all(r.status == "ok" for r in records.values())
    assert records["majority"].finished_at == json.loads(saved.read_text())["finished_at"]  # not re-run
