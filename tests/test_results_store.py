import json

import pytest

from beexbench.errors import BeexError
from beexbench.results.schema import CellKey, CellRecord
from beexbench.results.store import RunDir, find_runs, load_records
from records import sample_metrics


def test_write_read_and_resume_check(tmp_path):
    run = RunDir(tmp_path / "r1")
    key = CellKey("beexformer", "rotten_tomatoes", "cpu", 0)
    assert not run.has_cell(key)
    run.write_cell(CellRecord(key=key, run_id="r1", metrics=sample_metrics(acc=0.5)))
    assert run.has_cell(key)
    (rec,) = load_records([tmp_path])
    assert rec.key == key and rec.metrics.accuracy.value == 0.5
    assert not list(run.cells_dir.glob("*.tmp"))


def test_failed_cell_is_not_finished(tmp_path):
    run = RunDir(tmp_path / "r1")
    key = CellKey("m", "t", "cpu")
    run.write_cell(CellRecord(key=key, run_id="r1", status="failed", error="boom"))
    assert not run.has_cell(key)


def test_corrupt_foreign_and_newer_files_are_refused(tmp_path):
    run = RunDir(tmp_path / "r1")
    run.cells_dir.mkdir(parents=True)
    bad = run.cells_dir / "x.json"
    bad.write_text("{not json")
    with pytest.raises(BeexError, match="corrupt"):
        load_records([tmp_path])
    bad.write_text(json.dumps({"foo": 1}))
    with pytest.raises(BeexError, match="not a beexbench result file"):
        load_records([tmp_path])
    bad.write_text(json.dumps({"schema": "beexbench-result", "schema_version": 99}))
    with pytest.raises(BeexError, match="upgrade beexbench"):
        load_records([tmp_path])


def test_missing_results_folder_says_what_to_do(tmp_path):
    with pytest.raises(BeexError, match="run `beexbench run` first"):
        find_runs(tmp_path / "nope")
    with pytest.raises(BeexError, match="no beexbench runs"):
        find_runs(tmp_path)
