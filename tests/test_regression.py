"""Regression tasks: metrics by hand, the regression exit rules, the loss, the registry's
contract on a one-output task, label standardization, and a whole run to the report."""
from __future__ import annotations

import json
import math
import random

import pytest
import torch

from beexbench.adapters.base import TaskSpec
from beexbench.adapters.encoder_adapter import make_rule
from beexbench.adapters.protocols import exit_rule_of
from beexbench.adapters.registry import create_model, get_adapter_class, list_models, load_model
from beexbench.errors import BeexError
from beexbench.models.exits import Patience, PredictionChange, simulate
from beexbench.models.losses import exit_loss, exit_weights
from beexbench.runner.measure import fisher_ci, quality_record
from beexbench.training.batches import EncodedSplit
from beexbench.training.calibrate import choose, sweep
from beexbench.training.metrics import label_stats, pearson, per_sample_loss, score, spearman, standardize
from conftest import create_with_inputs, runnable

SPEC = TaskSpec(task="reg", num_labels=1, vocab_size=50, max_len=16, problem="regression", label_mean=2.0, label_std=0.5)
TINY = {"encoder": {"d_model": 16, "n_heads": 2, "n_blocks": 3, "d_ff": 32}, "train": {"epochs": 1, "batch_size": 16}}


def col(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32)[:, None]


# -- metrics, by hand ----------------------------------------------------------------------
def test_pearson_and_spearman_by_hand():
    x, y = torch.tensor([1.0, 2.0, 3.0, 4.0]), torch.tensor([2.0, 1.0, 4.0, 3.0])
    # centred: x = (-1.5, -0.5, 0.5, 1.5), y = (-0.5, -1.5, 1.5, 0.5): sum xy = 3, |x|^2 = |y|^2 = 5
    assert pearson(x, y) == pytest.approx(0.6)
    assert spearman(x, y) == pytest.approx(0.6)  # ranks equal the values here
    # ties take the average rank: y ranks (1.5, 1.5, 3, 4) against x ranks (1, 2, 3, 4)
    ties = torch.tensor([5.0, 5.0, 7.0, 9.0])
    rx, ry = torch.tensor([-1.5, -0.5, 0.5, 1.5]), torch.tensor([-1.0, -1.0, 0.5, 1.5])
    expected = float((rx * ry).sum() / (rx.norm() * ry.norm()))
    assert spearman(x, ties) == pytest.approx(expected)
    assert spearman(x, torch.exp(x)) == pytest.approx(1.0)  # monotone, not linear
    assert pearson(x, torch.exp(x)) < 0.99
    assert math.isnan(pearson(x, torch.ones(4)))


def test_score_and_loss_dispatch_on_the_labels():
    out = col(0.0, 1.0, 3.0)
    y = torch.tensor([0.5, 1.0, 2.0])
    assert torch.allclose(per_sample_loss(out, y), torch.tensor([0.25, 0.0, 1.0]))
    assert score(out, y) == pytest.approx(pearson(out[:, 0], y))
    assert score(col(1.0, 1.0, 1.0), y) == 0.0  # a constant prediction ranks as r = 0
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [3.0, 1.0]])
    assert score(logits, torch.tensor([0, 1, 1])) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="one output"):
        per_sample_loss(logits, y)


def test_standardization_uses_the_train_statistics():
    train = torch.tensor([1.0, 2.0, 3.0, 6.0])
    mean, std = label_stats(train)
    assert mean == pytest.approx(3.0) and std == pytest.approx(math.sqrt(14 / 3))  # sample std
    z = standardize(torch.tensor([3.0, 3.0 + std]), mean, std)
    assert torch.allclose(z, torch.tensor([0.0, 1.0]))
    assert label_stats(torch.full((5,), 2.0)) == (2.0, 1.0)


def test_fisher_interval_and_label_scale_errors():
    lo, hi = fisher_ci(0.5, 28)  # z = atanh(0.5) = 0.5493, half width 1.96 / 5
    assert lo == pytest.approx(math.tanh(0.549306 - 0.392), abs=1e-4)
    assert hi == pytest.approx(math.tanh(0.549306 + 0.392), abs=1e-4)
    rec = quality_record(col(0.0, 1.0, 2.0, 4.0), torch.tensor([0.0, 2.0, 2.0, 2.0]), 3.0, "test", "", "regression")
    assert rec.metric == "pearson_r" and rec.n == 4
    # errors (0, -1, 0, 2) in standardized units: MSE 5/4; label scale x3: RMSE 3*sqrt(5/4), MAE 3*3/4
    assert rec.mse_label_var == pytest.approx(1.25)
    assert rec.rmse == pytest.approx(3 * math.sqrt(1.25)) and rec.mae == pytest.approx(2.25)
    assert quality_record(torch.eye(2), torch.tensor([0, 0]), 1.0, "test", "", "classification").metric == "accuracy"


# -- exit rules and loss --------------------------------------------------------------------
def test_prediction_change_rule_by_hand():
    exits = torch.stack([col(0.0, 0.0, 0.0), col(0.05, 0.5, 0.5), col(0.3, 0.55, 2.0)])
    d = simulate(PredictionChange(delta=0.1, min_exit=2), exits)
    # sample 0 moves 0.05 at block 2: exits there; sample 1 moves 0.5 then 0.05: exits at 3;
    # sample 2 never settles: the last block answers
    assert d.exit_block.tolist() == [2, 3, 3]
    assert torch.allclose(d.logits[:, 0], torch.tensor([0.05, 0.55, 2.0]))
    assert simulate(PredictionChange(delta=0.0), exits).exit_block.tolist() == [3, 3, 3]
    assert simulate(PredictionChange(delta=10.0), exits).exit_block.tolist() == [2, 2, 2]


def test_patience_on_regression_outputs():
    exits = torch.stack([col(0.0, 0.0), col(0.05, 1.0), col(0.08, 1.02), col(0.5, 1.03)])
    # sample 0 agrees at blocks 2 and 3 (|change| < 0.1): exits at 3 with patience 2;
    # sample 1 agrees at blocks 3 and 4: exits at 4
    d = simulate(Patience(patience=2, agree_within=0.1), exits)
    assert d.exit_block.tolist() == [3, 4]


def test_entropy_rules_are_refused_for_regression():
    with pytest.raises(BeexError, match="not defined for regression"):
        make_rule({"rule": "fractional-entropy", "delta": 0.1}, "regression")
    with pytest.raises(BeexError, match="not defined for classification"):
        make_rule({"rule": "prediction-change", "delta": 0.1}, "classification")


def test_soft_routing_follows_the_prediction_change():
    exits = [col(0.0, 0.0), col(0.0, 1.0), col(0.0, 1.0)]
    w = exit_weights("soft_routing", exits, delta=0.1, tau=0.05, floor=0.0, min_exit=2, regression=True)
    s_settled = torch.sigmoid(torch.tensor(0.1 / 0.05))  # change 0 at block 2
    s_moved = torch.sigmoid(torch.tensor((0.1 - 1.0) / 0.05))  # change 1 at block 2
    assert w[0, 0] == 0 and w[0, 1] == pytest.approx(float(s_settled))
    assert w[1, 1] == pytest.approx(float(s_moved)) and w[1, 2] == pytest.approx(1 - float(s_moved))
    labels = torch.tensor([1.0, 2.0])
    uniform = exit_loss("uniform", exits, labels)
    assert uniform == pytest.approx(((1 + 1 + 1) / 3 + (4 + 1 + 1) / 3) / 2)


def test_calibration_picks_the_cheapest_threshold_within_tolerance():
    y = torch.linspace(-1, 1, 20)
    settled = torch.arange(20) < 10  # these samples are right at block 2 and stop moving there
    b2 = torch.where(settled, y, y + 0.8 * torch.sin(7 * y))
    b1 = torch.where(settled, b2, b2 + 1.0)
    exits = torch.stack([b1[:, None], b2[:, None], y[:, None]])
    rows = sweep([PredictionChange(d) for d in (0.0, 0.1, 10.0)], exits, y, torch.full((20,), 8))
    assert [r["mean_exit_block"] for r in rows] == [3.0, 2.5, 2.0]
    assert rows[0]["pearson_r"] == pytest.approx(1.0) and rows[1]["pearson_r"] == pytest.approx(1.0)
    assert rows[2]["pearson_r"] < 0.99
    assert choose(rows, 1.0, 0.01, "pearson_r") == 1  # cheapest within 0.01 of the no-exit r


# -- the registry's contract on a regression task -----------------------------------------
def regression_split(n: int, seed: int) -> EncodedSplit:
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(4, SPEC.max_len + 1, (n,), generator=g)
    mask = torch.arange(SPEC.max_len)[None, :] < lengths[:, None]
    ids = torch.randint(1, SPEC.vocab_size, (n, SPEC.max_len), generator=g) * mask
    return EncodedSplit(ids, mask, (ids.float().mean(1) - 12) / 6)  # a label the text determines


REGRESSION_MODELS = [n for n in list_models() if "regression" in get_adapter_class(n).problems]


def test_which_models_take_regression():
    assert {"beexformer", "beexformer-packed", "fp32", "int8-dynamic", "pabee-style", "transformer"} <= set(REGRESSION_MODELS)
    assert "deebert-style" not in REGRESSION_MODELS
    with pytest.raises(BeexError, match="deebert-style.*not regression"):
        create_model("deebert-style", SPEC, TINY)


@pytest.mark.parametrize("name", runnable(REGRESSION_MODELS))
def test_regression_contract(name, tmp_path):
    torch.manual_seed(0)
    overrides = TINY if get_adapter_class(name).uses_model_spec else {}
    adapter = create_with_inputs(name, SPEC, overrides)
    assert "regression" in getattr(exit_rule_of(adapter), "problems", ("regression",))
    report = adapter.fit(regression_split(48, 2), regression_split(24, 3))
    assert report.val_metric == "pearson_r" and -1.0 <= report.val_accuracy <= 1.0
    if report.calibration:
        assert report.calibration["metric"] == "pearson_r"
        assert all("pearson_r" in r for r in report.calibration["sweep"])
    batch = regression_split(8, 4)
    outs = adapter.forward(batch.input_ids, batch.attention_mask)
    assert all(o.shape == (8, 1) for o in outs)
    d = adapter.predict(batch.input_ids, batch.attention_mask)
    assert d.logits.shape == (8, 1) and torch.isfinite(d.logits).all()
    adapter.save(tmp_path)
    loaded = load_model(tmp_path)
    assert loaded.spec == SPEC
    assert torch.equal(loaded.predict(batch.input_ids, batch.attention_mask).logits, d.logits)


def test_a_training_step_lowers_the_squared_error():
    adapter = create_model("beexformer", SPEC, TINY)
    batch = regression_split(16, 5)
    module = adapter.module().eval()
    opt = torch.optim.AdamW(module.parameters(), lr=3e-3, weight_decay=0.0)

    def loss():
        return adapter.loss(adapter.forward(batch.input_ids, batch.attention_mask), batch.labels)

    with torch.no_grad():
        before = loss()
    for _ in range(5):
        opt.zero_grad()
        loss().backward()
        opt.step()
    with torch.no_grad():
        assert loss() < before


# -- a whole run ----------------------------------------------------------------------------
def write_regression_csv(path, n: int = 240, seed: int = 0):
    """Text whose score is the number of 'good' minus 'bad' words, plus noise."""
    rnd = random.Random(seed)
    lines = ["text,score"]
    for i in range(n):
        good, bad = rnd.randint(0, 3), rnd.randint(0, 3)
        words = ["good"] * good + ["bad"] * bad + rnd.sample(["the", "film", "was", "a", "plot", "cast"], 4)
        rnd.shuffle(words)
        lines.append(f"{' '.join(words)} {i},{good - bad + rnd.gauss(0, 0.3):.3f}")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_run_and_report_a_regression_task(tmp_path, monkeypatch):
    from beexbench.config import load_config
    from beexbench.report import build_report
    from beexbench.results.store import load_records
    from beexbench.runner.run import run_suite

    monkeypatch.setenv("BEEXBENCH_CACHE", str(tmp_path / "cache"))
    csv = write_regression_csv(tmp_path / "reg.csv")
    cfg = load_config("smoke", models=["beexformer", "fp32", "deebert-style"],
                      tasks=[f"csv:{csv}?text=text&label=score&name=tinyreg&problem=regression"],
                      results_dir=str(tmp_path / "results"), models_dir=str(tmp_path / "models"), energy=False)
    cfg.latency.isolate = False  # measured in this process: isolation is tested in test_runner_isolate
    summary = run_suite(cfg)
    assert not summary.failed
    assert [k.model for k, _ in summary.unsupported] == ["deebert-style"]
    records = {r.key.model: r for r in load_records([tmp_path / "results"])}
    assert set(records) == {"beexformer", "fp32", "majority", "bow-linear"}  # the reference floors join every run
    floors = {name: records.pop(name) for name in ("majority", "bow-linear")}
    assert floors["majority"].metrics.accuracy.value is None  # a constant answer has no Pearson r
    assert "undefined" in floors["majority"].metrics.accuracy.undefined
    assert floors["bow-linear"].metrics.accuracy.value > 0.5  # the counting task is a bag-of-words task
    for rec in records.values():
        acc = rec.metrics.accuracy
        assert acc.metric == "pearson_r" and acc.ci_method == "fisher_z"
        assert rec.metrics.exits.metric == "pearson_r" and rec.metrics.exits.rule["rule"] == "prediction-change"
        assert rec.metrics.exits.mean_abs_change_per_exit[0] is None
    assert records["fp32"].metrics.accuracy.value > 0.5  # the counting task is learnable
    out = build_report(tmp_path / "results", tmp_path / "report.html")
    html = out.read_text()
    assert "Pearson r ×100" in html and "Fisher-z" in html
    assert "No line for majority (smoke): Pearson r is undefined (constant prediction)" in html
    tables = (tmp_path / "report-tables" / "tables.md").read_text()
    assert "Pearson r ×100 (test)" in tables and "accuracy % (test)" not in tables
    json.dumps(records["beexformer"].to_dict())  # the record stays plain JSON
