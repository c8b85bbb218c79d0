"""Issue 14: user errors stop a run before any work; what goes wrong inside one cell - a
BeexError included - fails that cell only. And the report places each model by the role its
records state, not by its name."""
from __future__ import annotations

import csv

import pytest

from baselines.floors import Majority
from beexbench.adapters.registry import ADAPTERS, register_model
from beexbench.config import load_config
from beexbench.errors import BeexError, ConfigError
from beexbench.report import build_report, default_tables_dir
from beexbench.runner import run_suite
from beexbench.runner.train import train_suite
from conftest import write_tiny_suite
from test_report import _rows, _tables, make_record, write_run

FAILING = "test-beexerror-in-fit"


class BeexErrorInFit(Majority):
    """Test model: its fit raises a BeexError (a per-model condition, found while running its cell)."""

    def fit(self, *args, **kwargs):
        raise BeexError("this model cannot be fitted on this task: a per-model condition")


@pytest.fixture
def failing_model():
    ADAPTERS.unregister(FAILING)
    register_model(FAILING)(type("BeexErrorInFitCopy", (BeexErrorInFit,), {}))
    yield FAILING
    ADAPTERS.unregister(FAILING)


def test_a_beexerror_inside_a_cell_fails_that_cell_and_the_suite_goes_on(tmp_path, monkeypatch, failing_model):
    monkeypatch.setenv("BEEXBENCH_CACHE", str(tmp_path / "cache"))
    cfg = load_config(config_file=write_tiny_suite(tmp_path, models=(failing_model, "majority")), run_id="cells")
    summary = run_suite(cfg)
    assert [k.model for k, _ in summary.failed] == [failing_model]
    assert summary.failed[0][1].startswith("BeexError: this model cannot be fitted on this task")
    assert [k.model for k in summary.written] == [failing_model, "majority"]  # the failure is recorded, majority measured


def test_train_goes_on_past_a_beexerror(tmp_path, monkeypatch, failing_model):
    monkeypatch.setenv("BEEXBENCH_CACHE", str(tmp_path / "cache"))
    cfg = load_config(config_file=write_tiny_suite(tmp_path, models=(failing_model, "majority")))
    summary = train_suite(cfg)
    assert [what.split(" on ")[0] for what, _ in summary.failed] == [failing_model]
    assert summary.failed[0][1].startswith("BeexError: this model cannot be fitted")
    assert len(summary.written) == 1 and "majority" in str(summary.written[0])


def test_user_errors_stop_the_run_before_any_work(tmp_path, monkeypatch):
    """A model store this beexbench cannot read is a configuration problem, listed with the others."""
    monkeypatch.setenv("BEEXBENCH_CACHE", str(tmp_path / "cache"))
    import beexbench.runner.run as run_mod

    monkeypatch.setattr(run_mod, "load_task", lambda *a, **k: pytest.fail("data loaded before validation"))
    cfg = load_config(config_file=write_tiny_suite(tmp_path, models=("majority",)), models_from=str(tmp_path / "nowhere"),
                      run_id="never")
    with pytest.raises(ConfigError) as err:
        run_suite(cfg)
    assert len(err.value.problems) == 1 and "is not a beexbench model store" in err.value.problems[0]
    assert not (tmp_path / "results" / "never").exists()


# -- the report reads declared roles -------------------------------------------------------
def _declared(model: str, role: str, **kw):
    rec = make_record(model, **kw)
    rec.model["role"] = role
    return rec


def test_the_report_places_models_by_their_declared_role(tmp_path):
    recs = [
        _declared("beexformer", "subject", acc=0.80),
        _declared("beexformer-rival", "baseline", acc=0.70),  # the old name rule made it an ablation
        _declared("lighter-blocks", "ablation of beexformer", acc=0.76, description="Lighter blocks. More."),
        _declared("fp16", "full-precision reference", acc=0.84, total_bits=4_000_000, bits_no_emb=2_000_000),
        _declared("fp32", "baseline", acc=0.83, total_bits=12_000_000),  # not the reference here: fp16 is
        _declared("beexformer-packed-v2", "deployment of beexformer", acc=0.80),
    ]
    html = build_report(write_run(tmp_path / "res", "declared", recs), tmp_path / "r.html").read_text()
    tables = dict(_tables(html))
    ablation = {r[0]: r for r in _rows(tables["ablation"])}
    assert set(ablation) == {"beexformer (full model)", "lighter-blocks"} and ablation["lighter-blocks"][4] == "-4.0"
    summary = {r[0]: r for r in _rows(tables["summary"])}
    assert len(summary) == 6
    assert summary["fp16"][4] == "1.0 / 1.0 / 1.0" and summary["fp32"][4].startswith(f"{4 / 12:.1f} / ")
    assert "× smaller than fp16" in tables["summary"]
    with open(default_tables_dir(tmp_path / "r.html") / "ablation.csv", newline="") as f:
        assert {r["model"]: r["reference"] for r in csv.DictReader(f)} == {"beexformer": "beexformer", "lighter-blocks": "beexformer"}
