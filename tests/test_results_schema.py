"""Typed result records (issue 14): the codec reads every key the schema requires and says which
one is wrong, in which file; records written by the runner round-trip to the same file; version-1
records still read, with their documented defaults; the task's declared problem is the one source."""
from __future__ import annotations

import copy
import dataclasses
import json
import math
from pathlib import Path

import pytest
import torch

from beexbench._io import dumps_strict
from beexbench.errors import BeexError
from beexbench.report.frame import records_frame
from beexbench.results.codec import RecordError
from beexbench.results.costs import ENERGY_PROVENANCES
from beexbench.results.metrics import Accuracy, CellMetrics, Exits, RegressionQuality
from beexbench.results.schema import SCHEMA_VERSION, CellKey, CellRecord
from beexbench.results.store import RunDir, load_records
from records import metrics_doc, sample_metrics

DATA = Path(__file__).parent / "data"
FIXTURES = sorted(DATA.glob("v4-*.json"))  # written by the runner of this schema version
V3 = sorted(DATA.glob("v3-*.json"))
OLDER = sorted(DATA.glob("v2-*.json"))


def _doc(name: str) -> dict:
    return json.loads((DATA / name).read_text())


def _read(doc: dict, source: str = "cells/x.json") -> CellRecord:
    return CellRecord.from_dict(doc, source=source)


# --------------------------------------------------------------------------- round trip
@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.stem)
def test_records_written_by_the_runner_read_and_write_back_to_the_same_file(path):
    text = path.read_text()
    rec = _read(json.loads(text), str(path))
    assert dumps_strict(rec.to_dict()) + "\n" == text  # same keys, values and key order
    assert isinstance(rec.metrics, CellMetrics)


@pytest.mark.parametrize("path", V3, ids=lambda p: p.stem)
def test_version_3_records_read_without_per_sample_outputs_and_write_as_current(path):
    rec = _read(json.loads(path.read_text()), str(path))
    assert "samples" not in rec.metrics.extra and "static_depth" not in rec.metrics.extra
    doc = rec.to_dict()
    assert doc["schema_version"] == SCHEMA_VERSION == 4
    assert _read(json.loads(dumps_strict(doc))) == rec


def test_a_current_fixture_exists():
    assert FIXTURES, "tests/data has no record of the current schema version (write one with the runner)"


@pytest.mark.parametrize("path", OLDER, ids=lambda p: p.stem)
def test_version_2_records_read_with_the_documented_defaults_and_write_as_current(path):
    rec = _read(json.loads(path.read_text()), str(path))
    m = rec.metrics
    assert m.latency_by_threads == () and m.batch1.wait_policy is None and m.batch1.isolated is False
    doc = rec.to_dict()
    assert doc["schema_version"] == SCHEMA_VERSION and doc["metrics"]["batch1"]["isolated"] is False
    assert _read(json.loads(dumps_strict(doc))) == rec


def test_the_typed_fields_are_what_the_file_says():
    rec = _read(_doc("v2-beexformer-classification.json"))
    m = rec.metrics
    assert isinstance(m.accuracy, Accuracy) and m.accuracy.metric == "accuracy" and m.accuracy.undefined is None
    assert m.accuracy.correct == round(m.accuracy.value * m.accuracy.n)
    assert isinstance(m.exits, Exits) and sum(m.exits.histogram) == m.accuracy.n
    assert m.exits.calibration.param == "delta" and m.exits.calibration.sweep[0].get("delta") == -0.5
    assert m.exits.mean_entropy_per_exit and m.exits.mean_abs_change_per_exit is None
    assert m.ops.per_sample_mean.non_binary_macs == sum(v for k, v in m.ops.per_sample_mean.macs.items() if k != "binary")
    assert m.energy.provenance == "unavailable" and m.energy.joules is None  # measured, but no counter: why is in inputs
    assert "reason" in m.energy.inputs
    floor = _read(_doc("v2-majority-regression.json")).metrics
    assert floor.exits is None  # no blocks and no exit rule
    assert isinstance(floor.accuracy, RegressionQuality) and floor.accuracy.value is None
    assert floor.accuracy.undefined == "Pearson r is undefined (constant prediction)"


def test_sections_are_frozen():
    m = sample_metrics()
    with pytest.raises(dataclasses.FrozenInstanceError):
        m.accuracy.value = 0.1  # type: ignore[misc]


# --------------------------------------------------------------------------- errors
def _without(doc: dict, *path: str) -> dict:
    doc = copy.deepcopy(doc)
    node = doc
    for p in path[:-1]:
        node = node[p]
    del node[path[-1]]
    return doc


@pytest.mark.parametrize("path, pointer", [
    (("metrics", "size", "total_bits"), "/metrics/size/total_bits"),
    (("metrics", "accuracy", "value"), "/metrics/accuracy/value"),
    (("metrics", "accuracy", "metric"), "/metrics/accuracy/metric"),  # required from version 2
    (("metrics", "batch1", "median"), "/metrics/batch1/median"),
    (("metrics", "ops", "per_sample_mean", "bops"), "/metrics/ops/per_sample_mean/bops"),
    (("metrics", "exits", "calibration", "sweep"), "/metrics/exits/calibration/sweep"),
    (("metrics", "exits"), "/metrics/exits"),  # null is fine for a floor, absent is not
    (("metrics", "memory"), "/metrics/memory"),
])
def test_a_missing_key_is_a_one_line_error_naming_the_file_and_the_key(path, pointer):
    with pytest.raises(RecordError) as err:
        _read(_without(_doc("v2-beexformer-classification.json"), *path), "results/r/cells/beexformer.json")
    msg = str(err.value)
    assert "\n" not in msg and isinstance(err.value, BeexError)
    assert msg.startswith("results/r/cells/beexformer.json ") and f"{pointer} is missing" in msg


@pytest.mark.parametrize("path, value, expect", [
    (("metrics", "size", "total_bits"), "142016", "/metrics/size/total_bits is not an integer"),
    (("metrics", "size", "total_bits"), 1.5, "/metrics/size/total_bits is not an integer"),
    (("metrics", "batch1", "median"), None, "/metrics/batch1/median is null, expected a number"),
    (("metrics", "batch1", "median"), True, "/metrics/batch1/median is not a number"),
    (("metrics", "batch1", "ci95_median"), [1.0], "/metrics/batch1/ci95_median has 1 items, expected 2"),
    (("metrics", "exits", "histogram", 1), "24", "/metrics/exits/histogram/1 is not an integer"),
    (("metrics", "energy", "provenance"), "guessed", "/metrics/energy/provenance is not one of"),
    (("metrics", "energy", "provenance"), "measured:rapl", "/metrics/energy is inconsistent"),  # no joules
    (("metrics", "accuracy", "metric"), "f1", "/metrics/accuracy is none of Accuracy, RegressionQuality"),
    (("metrics", "ops"), [], "/metrics/ops is not an object"),
])
def test_a_wrong_type_is_a_one_line_error_naming_the_key(path, value, expect):
    doc = copy.deepcopy(_doc("v2-beexformer-classification.json"))
    node = doc
    for p in path[:-1]:
        node = node[p]
    node[path[-1]] = value
    with pytest.raises(RecordError, match="cells/x.json") as err:
        _read(doc)
    assert expect in str(err.value) and "\n" not in str(err.value)


def test_optional_by_design_values_keep_their_reason():
    doc = _doc("v2-majority-regression.json")
    del doc["metrics"]["accuracy"]["undefined"]  # a null Pearson r must say why
    with pytest.raises(RecordError, match="/metrics/accuracy is inconsistent .*exactly when 'undefined' says why"):
        _read(doc)
    doc = _doc("v2-beexformer-classification.json")
    del doc["metrics"]["exits"]["mean_entropy_per_exit"]
    with pytest.raises(RecordError, match="exits in accuracy need mean_entropy_per_exit"):
        _read(doc)
    doc = _doc("v2-beexformer-classification.json")
    del doc["metrics"]["energy"]  # energy not measured (energy = false): no section, shown as "not measured"
    rec = _read(doc)
    assert rec.metrics.energy is None and "energy" not in rec.to_dict()["metrics"]
    assert records_frame([rec]).iloc[0]["energy_provenance"] == "not measured"


def test_failed_and_finished_cells():
    key = CellKey("m", "t", "cpu")
    failed = CellRecord(key=key, run_id="r", status="failed", error="boom")
    assert failed.to_dict()["metrics"] == {} and _read(failed.to_dict()).metrics is None
    with pytest.raises(ValueError, match="needs its metrics"):
        CellRecord(key=key, run_id="r")
    doc = _doc("v2-beexformer-classification.json")
    doc["metrics"] = {}
    with pytest.raises(RecordError, match="/metrics is missing"):
        _read(doc)


def test_a_bad_record_in_a_run_folder_is_named_when_the_report_reads_it(tmp_path):
    run = RunDir(tmp_path / "r")
    path = run.write_cell(CellRecord(key=CellKey("m", "t", "cpu"), run_id="r", metrics=sample_metrics()))
    doc = json.loads(path.read_text())
    doc["metrics"]["size"]["total_bits_without_embedding"] = doc["metrics"]["size"].pop("total_bits_without_embeddings")
    path.write_text(json.dumps(doc))  # a renamed key: an error, never a NaN in the report
    with pytest.raises(RecordError, match=f"{path} .*/metrics/size/total_bits_without_embeddings is missing"):
        load_records([tmp_path])


# --------------------------------------------------------------------------- compatibility
def test_unknown_keys_are_kept_and_written_back():
    doc = _doc("v3-beexformer-classification.json")
    doc["metrics"]["batch1"]["new_profiler_field"] = 7
    doc["metrics"]["ops"]["per_sample_mean"]["extra_count"] = 1.0
    doc["metrics"]["future_section"] = {"a": 1}
    rec = _read(doc)
    assert rec.metrics.batch1.extra == {"new_profiler_field": 7}
    assert rec.to_dict()["metrics"] == doc["metrics"]


def _as_version_1(doc: dict) -> dict:
    """A record as beexbench wrote it before version 2: no null_reasons, no metric names, no L sweep."""
    doc = copy.deepcopy(doc)
    doc["schema_version"] = 1
    del doc["null_reasons"]
    m = doc["metrics"]
    for part in (m["accuracy"], m["accuracy_no_exit"], m["exits"], m["exits"]["calibration"]):
        del part["metric"]
    del m["seq_len_sweep"]
    m["accuracy"]["value"] = math.nan  # version 1 wrote NaN itself
    return doc


def test_version_1_records_read_with_the_documented_defaults():
    v2 = _doc("v2-beexformer-classification.json")
    rec = _read(_as_version_1(v2))
    m = rec.metrics
    assert m.accuracy.metric == m.accuracy_no_exit.metric == m.exits.metric == m.exits.calibration.metric == "accuracy"
    assert m.seq_len_sweep == () and math.isnan(m.accuracy.value)
    assert rec.to_dict()["schema_version"] == SCHEMA_VERSION  # written again (merge), it is a current record
    text = dumps_strict(rec.to_dict())
    assert json.loads(text)["null_reasons"] == {"/metrics/accuracy/value": "not a number (NaN)"}
    again = _read(json.loads(text))
    assert again.metrics.accuracy.metric == "accuracy" and math.isnan(again.metrics.accuracy.value)
    # the same keys absent from a version-2 record are errors
    v2_without = _as_version_1(v2)
    v2_without["schema_version"] = 2
    with pytest.raises(RecordError, match="/metrics/accuracy/metric is missing"):
        _read(v2_without)


def test_metrics_doc_is_a_complete_record_for_both_problems():
    for metric in ("accuracy", "pearson_r"):
        doc = metrics_doc(metric=metric)
        assert CellMetrics.from_dict(doc, at="/metrics").to_dict() == doc


def test_energy_provenances_match_the_profiler():
    from beexbench.profilers.energy import PROVENANCES

    assert ENERGY_PROVENANCES == PROVENANCES


# --------------------------------------------------------------------------- the declared problem
def test_the_declared_problem_decides_and_labels_must_agree():
    from beexbench.training.metrics import check_labels, metric_name, metric_of, problem_of, score

    ints, floats = torch.tensor([0, 1, 1]), torch.tensor([0.5, 1.0, 2.0])
    assert problem_of(ints) == "classification" and problem_of(floats) == "regression"
    assert metric_of("regression") == metric_name(floats) == "pearson_r"
    assert metric_of("classification") == metric_name(ints) == "accuracy"
    out = torch.tensor([[0.0], [1.0], [3.0]])
    assert score(out, floats, "regression") == score(out, floats)
    check_labels(ints, "classification")
    with pytest.raises(BeexError, match="a regression task needs floating-point scores as labels, not torch.int64"):
        check_labels(ints, "regression", where="task t's test split")
    with pytest.raises(BeexError, match="classification task needs integer class indices"):
        check_labels(floats, "classification")


def test_prepare_task_refuses_labels_that_contradict_the_declared_problem(tmp_path, monkeypatch):
    from beexbench.data import load_task
    from beexbench.runner.run import prepare_task
    from conftest import write_tiny_csv

    monkeypatch.setenv("BEEXBENCH_CACHE", str(tmp_path / "cache"))
    data = load_task(f"csv:{write_tiny_csv(tmp_path / 't.csv')}?text=text&label=label&name=tiny")
    splits, spec = prepare_task(data)
    assert spec.problem == "classification" and not splits["test"].labels.is_floating_point()
    monkeypatch.setattr(type(data), "encode", lambda self, name, _orig=type(data).encode, **kw: (
        lambda ids, mask, y: (ids, mask, y.float()))(*_orig(self, name, **kw)))
    with pytest.raises(BeexError, match="task tiny's train split: a classification task needs integer class indices"):
        prepare_task(data)
