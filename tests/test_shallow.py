"""fp32-shallow (issue 28): fp32 trained alone at k = exit.min_exit blocks, one exit, no early exit -
the static-depth rival of "deep training + exits". It is k blocks deep whatever depth the suite
gives the deep models, refuses a k above that depth, and the report shows it as a baseline."""
from __future__ import annotations

import csv
import json

import pytest
import torch

from beexbench.adapters.base import TaskSpec
from beexbench.adapters.registry import create_model, get_adapter_class
from beexbench.adapters.roles import BASELINE
from beexbench.errors import ConfigError
from beexbench.training.batches import EncodedSplit

pytestmark = pytest.mark.usefixtures("one_thread")
SPEC = TaskSpec(task="tiny", num_labels=2, vocab_size=40, max_len=12)
DEEP = {"encoder": {"d_model": 16, "n_heads": 2, "n_blocks": 4, "d_ff": 16}, "train": {"epochs": 1, "batch_size": 16}}


def _split(n: int, seed: int) -> EncodedSplit:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, SPEC.vocab_size, (n, SPEC.max_len), generator=g)
    mask = torch.ones_like(ids, dtype=torch.bool)
    return EncodedSplit(ids, mask, torch.randint(0, 2, (n,), generator=g))


def test_it_is_k_blocks_with_one_exit_whatever_the_suite_depth():
    torch.manual_seed(0)
    model = create_model("fp32-shallow", SPEC, DEEP)
    assert len(model.module().blocks) == 2  # k = min_exit = 2, not the suite's 4
    split = _split(3, 0)
    assert model.exit_layout().exit_blocks == (2,) and len(model.forward(split.input_ids, split.attention_mask)) == 1
    assert model.config["encoder"]["n_blocks"] == 2 and model.config["exit"]["rule"] == "final"
    assert model.config["calibration"]["grid"] == []
    fp32 = get_adapter_class("fp32").default_spec()
    assert model.model_spec.encoder.weight_bits == 32 and model.model_spec.encoder.dropout == fp32.encoder.dropout
    assert model.model_spec.exit.min_exit == fp32.exit.min_exit == 2  # k defaults to fp32's min exit
    assert get_adapter_class("fp32-shallow").role == BASELINE
    deeper = create_model("fp32-shallow", SPEC, {**DEEP, "exit": {"min_exit": 3}})
    assert len(deeper.module().blocks) == 3 and deeper.exit_layout().exit_blocks == (3,)


def test_it_trains_and_saves_as_k_blocks(tmp_path):
    torch.manual_seed(0)
    model = create_model("fp32-shallow", SPEC, DEEP)
    model.fit(_split(64, 1), _split(32, 2))
    model.save(tmp_path)
    again = type(model).load(tmp_path)
    assert len(again.module().blocks) == 2 and again.exit_layout().exit_blocks == (2,)
    x = _split(5, 3)
    decided = again.predict(x.input_ids, x.attention_mask)
    assert decided.exit_block.tolist() == [2] * 5  # every sample runs the k blocks
    assert torch.allclose(decided.logits, model.predict(x.input_ids, x.attention_mask).logits)


def test_a_k_deeper_than_the_deep_models_and_a_backbone_are_refused():
    cls = get_adapter_class("fp32-shallow")
    (problem,) = cls.config_problems({**DEEP, "exit": {"min_exit": 5}})
    assert "'model.exit.min_exit' (5) is above 'model.encoder.n_blocks' (4)" in problem
    with pytest.raises(ConfigError, match="fp32-shallow trains k blocks from scratch"):
        cls.resolve_spec({"backbone": {"name": "minilm-l6"}})


def test_a_run_records_it_as_a_k_block_baseline_and_the_report_names_it_so(tmp_path, monkeypatch):
    from beexbench.config import load_config
    from beexbench.report import build_report, default_tables_dir
    from beexbench.runner import run_suite
    from conftest import write_tiny_suite

    monkeypatch.setenv("BEEXBENCH_CACHE", str(tmp_path / "cache"))
    cfg = load_config(config_file=write_tiny_suite(tmp_path, models=("fp32-shallow",)), run_id="shallow")
    summary = run_suite(cfg)
    assert not summary.failed and len(summary.written) == 1
    (cell,) = (tmp_path / "results" / "shallow").rglob("fp32-shallow*.json")
    doc = json.loads(cell.read_text())
    assert doc["model"]["role"] == "baseline" and doc["model"]["config"]["encoder"]["n_blocks"] == 2  # the suite says 3
    exits = doc["metrics"]["exits"]
    assert (exits["n_exits"], exits["n_blocks"], exits["mean_exit_block"]) == (1, 2, 2.0)
    out = build_report(tmp_path / "results", tmp_path / "report.html")
    with open(default_tables_dir(out) / "summary.csv", newline="") as f:
        roles = {r["model"].split(" (")[0]: r["role"] for r in csv.DictReader(f)}  # the label carries the suite setting
    assert roles == {"fp32-shallow": "baseline"}
