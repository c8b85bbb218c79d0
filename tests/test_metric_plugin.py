"""Issue 27's "done means" for metrics: a metric added by a plugin - here this file alone, no file
of the tree touched - is declared in one place (its section + one MetricDeclaration) and appears
in the record on disk (typed when read back), the report's frame, the seed aggregation, the
summary table, its CSV, the HTML report and a Pareto figure. Old records without it still read.

An in-tree metric touches three files: its profiler (``beexbench/profilers/<x>.py``, returning the
section), its section and declaration (``beexbench/results/<x>.py``), and one line of
``BUILTIN_METRICS`` in ``beexbench/results/columns.py`` (a plugin names it in its
``beexbench.metrics`` entry points instead)."""
from __future__ import annotations

import csv
import dataclasses
import inspect
import json
import math

import pytest

from beexbench.config import load_config
from beexbench.report import build_report, default_tables_dir
from beexbench.report.aggregate import aggregate, dedupe
from beexbench.report.frame import records_frame
from beexbench.report.tables import summary_table
from beexbench.results.codec import Section, written
from beexbench.results.columns import DECLARED_METRICS, Column, MetricDeclaration, Plot, declare_metric
from beexbench.results.schema import CellRecord
from beexbench.runner import run_suite
from beexbench.runner.measure import measure_declared
from conftest import write_tiny_suite
from test_report import _rows, _section, _tables, make_record, write_run

KEY = "weight_traffic"


@dataclasses.dataclass(frozen=True, kw_only=True)
class WeightTraffic(Section):
    """Bytes of weights read per test sample (the plugin's section: ``metrics.weight_traffic``)."""

    bytes_per_sample: float
    tensors: int
    unit: str = written("byte")


def measure_traffic(adapter, test, target) -> WeightTraffic:
    """The plugin's profiler: every parameter read once per sample (a stand-in with a known value)."""
    try:
        params = list(adapter.module().parameters())
    except NotImplementedError:  # a model without a torch module (the reference floors)
        params = []
    return WeightTraffic(bytes_per_sample=float(sum(p.numel() * p.element_size() for p in params)) + 1000.0,
                         tensors=len(params))


DECLARATION = MetricDeclaration(
    key=KEY, section=WeightTraffic, measure=measure_traffic,
    columns=(Column("weight_kib", lambda s: s.bytes_per_sample / 1024, unit="KiB", better="lower", spread="weight_kib_std",
                    front="traffic", header="weight traffic KiB", fmt=".2f", csv="weight_traffic_kib",
                    plot=Plot("weight traffic per sample (KiB)", "weight traffic")),),
)


@pytest.fixture
def plugin():
    DECLARED_METRICS.unregister(KEY)
    declare_metric(DECLARATION)
    yield DECLARATION
    DECLARED_METRICS.unregister(KEY)


def with_traffic(record: CellRecord, kib: float) -> CellRecord:
    record.metrics = dataclasses.replace(record.metrics, extra={KEY: WeightTraffic(bytes_per_sample=kib * 1024, tensors=3)})
    return record


def test_the_plugin_lives_in_one_file_outside_the_tree():
    here = inspect.getsourcefile(test_the_plugin_lives_in_one_file_outside_the_tree)
    assert {inspect.getsourcefile(o) for o in (WeightTraffic, measure_traffic, DECLARATION.columns[0].read)} == {here}
    assert DECLARATION.columns[0].section == KEY  # the declaration ties its columns to its section


def test_a_declared_metric_is_measured_written_and_read_back_typed(tmp_path, monkeypatch, plugin):
    monkeypatch.setenv("BEEXBENCH_CACHE", str(tmp_path / "cache"))
    cfg = load_config(config_file=write_tiny_suite(tmp_path, models=("majority",)), run_id="plugin")
    summary = run_suite(cfg)
    assert not summary.failed and len(summary.written) == 1
    (path,) = [p for p in (tmp_path / "results").rglob("*.json") if json.loads(p.read_text()).get("schema") == "beexbench-result"]
    doc = json.loads(path.read_text())
    assert doc["metrics"][KEY] == {"bytes_per_sample": 1000.0, "tensors": 0, "unit": "byte"}  # majority: no weights
    record = CellRecord.from_dict(doc, source=str(path))
    assert record.metrics.section(KEY) == WeightTraffic(bytes_per_sample=1000.0, tensors=0)
    assert record.to_dict() == doc  # read and written again: the same file
    frame = records_frame([record])
    assert frame.loc[0, "weight_kib"] == pytest.approx(1000 / 1024)


def test_a_wrong_section_type_fails_the_measurement(plugin):
    DECLARED_METRICS.unregister(KEY)
    declare_metric(dataclasses.replace(DECLARATION, measure=lambda a, t, g: {"bytes_per_sample": 1.0}))
    with pytest.raises(TypeError, match="not its declared WeightTraffic"):
        measure_declared(None, None, None)


def test_a_declared_metric_reaches_the_frame_aggregation_tables_csv_and_report(tmp_path, plugin):
    records = [with_traffic(make_record("beexformer", seed=0, acc=0.80), 10.0),
               with_traffic(make_record("beexformer", seed=1, acc=0.78), 14.0),
               with_traffic(make_record("fp32", acc=0.83, latency=1.0), 400.0),
               with_traffic(make_record("beexformer-ste", acc=0.74), 50.0),  # less accurate and more traffic
               make_record("int8-dynamic", acc=0.82)]  # an older record without the section
    results = tmp_path / "results"
    write_run(results, "run-a", records)
    cells = records_frame([CellRecord.from_dict(json.loads(p.read_text())) for p in sorted((results / "run-a").rglob("*.json"))
                           if json.loads(p.read_text()).get("schema") == "beexbench-result"])
    agg = aggregate(dedupe(cells)[0]).set_index("label")
    assert agg.loc["beexformer", "weight_kib"] == 12.0  # mean of 10 and 14 (its declared aggregation)
    assert agg.loc["beexformer", "weight_kib_std"] == pytest.approx(math.sqrt(8))  # sample std of the two seeds
    assert math.isnan(agg.loc["int8-dynamic", "weight_kib"])  # no section: missing, never a zero
    table = summary_table(agg.reset_index())
    assert table.columns[-2:] == ["weight traffic KiB", "Pareto front"]
    shown = {row[0]: row[-2] for row in table.rows}
    assert shown == {"beexformer": "12.00 ± 2.83", "fp32": "400.00", "beexformer-ste": "50.00", "int8-dynamic": "—"}
    fronts = {row[0]: row[-1].split(", ") for row in table.rows}  # its declared front: higher quality, lower traffic
    assert [m for m, on in fronts.items() if "traffic" in on] == ["fp32", "beexformer"]

    out = build_report([results], tmp_path / "out" / "report.html")
    html = out.read_text(encoding="utf-8")
    (kind, summary_html), *_ = _tables(_section(html, "rotten_tomatoes on cpu"))
    assert kind == "summary" and "weight traffic KiB" in summary_html
    assert {r[0]: r[-2] for r in _rows(summary_html)}["fp32"] == "400.00"
    assert 'alt="accuracy vs weight traffic, rotten_tomatoes on cpu' in html  # its declared Pareto figure
    with open(default_tables_dir(out) / "summary.csv", newline="", encoding="utf-8") as f:
        rows = {r["model"]: r for r in csv.DictReader(f)}
    assert float(rows["beexformer"]["weight_traffic_kib"]) == 12.0 and rows["int8-dynamic"]["weight_traffic_kib"] == ""
