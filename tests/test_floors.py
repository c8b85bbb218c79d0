"""The reference floors: bow-linear's torch module against scikit-learn as the independent
reference, majority against hand-computed answers, both on a bag-of-words task, their
checkpoints, their measurement, and their place in every run."""
from __future__ import annotations

import math

import pytest
import torch

from beexbench.adapters.base import TaskSpec
from beexbench.adapters.registry import create_model, load_model
from beexbench.profilers.ops import DepthCost, count_ops
from beexbench.profilers.size import measure_size
from beexbench.runner.measure import measure_accuracy_and_exits
from beexbench.training.batches import EncodedSplit

V, L = 60, 16


def bow_split(n: int, seed: int, num_labels: int = 2, regression: bool = False) -> EncodedSplit:
    """Random token texts (contiguous masks, like the tokenizer's) whose label is decided by a
    few 'words': class = how many of the tokens 7 and 9 occur (capped); regression: 7s minus 9s."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(2, L + 1, (n,), generator=g)
    mask = torch.arange(L)[None, :] < lengths[:, None]
    ids = torch.randint(10, V, (n, L), generator=g)
    plant = torch.rand(n, L, generator=g)
    ids = torch.where(plant < 0.06, 7, torch.where(plant > 0.95, 9, ids)) * mask
    if regression:
        y = (ids == 7).sum(1).float() - (ids == 9).sum(1).float()
        return EncodedSplit(ids, mask, (y - y.mean()) / y.std())
    y = ((ids == 7).any(1).long() + (ids == 9).any(1).long()).clamp(max=num_labels - 1)
    return EncodedSplit(ids, mask, y)


def spec(num_labels: int = 2, problem: str = "classification") -> TaskSpec:
    return TaskSpec(task="bow", num_labels=num_labels, vocab_size=V, max_len=L, problem=problem)


def reference_docs(split: EncodedSplit) -> list[list[tuple]]:
    """Unigrams and bigrams as tuples of token ids, written independently of baselines.floors."""
    docs = []
    for ids, mask in zip(split.input_ids.tolist(), split.attention_mask.tolist()):
        tokens = [t for t, m in zip(ids, mask) if m]
        docs.append([(t,) for t in tokens] + list(zip(tokens, tokens[1:])))
    return docs


def _identity(doc):
    return doc


@pytest.mark.parametrize("num_labels,sublinear", [(2, False), (3, True)])
def test_bow_linear_module_equals_sklearn_decision(num_labels, sublinear):
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    train, val, test = (bow_split(n, s, num_labels) for n, s in ((300, 1), (100, 2), (150, 3)))
    grid = {"grid": {"sublinear_tf": [sublinear], "min_df": [1], "C": [2.0]}}
    adapter = create_model("bow-linear", spec(num_labels), grid)
    adapter.fit(train, val)
    vec = TfidfVectorizer(analyzer=_identity, sublinear_tf=sublinear, min_df=1)
    lr = LogisticRegression(C=2.0, max_iter=2000).fit(vec.fit_transform(reference_docs(train)), train.labels.numpy())
    decision = torch.as_tensor(lr.decision_function(vec.transform(reference_docs(test))))
    with torch.no_grad():
        logits = adapter.forward(test.input_ids, test.attention_mask)[0].double()
    if num_labels == 2:  # one decision value: the logit of class 1 over class 0
        logits = logits[:, 1:] - logits[:, :1]
        decision = decision[:, None]
    assert logits.shape == decision.shape
    assert torch.allclose(logits, decision, atol=1e-5, rtol=1e-5), (logits - decision).abs().max()
    assert adapter.net.n_features == len(vec.vocabulary_)


def test_bow_linear_regression_equals_sklearn_ridge():
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import Ridge

    train, val, test = (bow_split(n, s, regression=True) for n, s in ((300, 4), (100, 5), (150, 6)))
    adapter = create_model("bow-linear", spec(1, "regression"), {"grid": {"sublinear_tf": [False], "min_df": [2], "alpha": [1.0]}})
    report = adapter.fit(train, val)
    assert report.val_metric == "pearson_r" and report.val_accuracy > 0.8
    vec = TfidfVectorizer(analyzer=_identity, min_df=2)
    ridge = Ridge(alpha=1.0).fit(vec.fit_transform(reference_docs(train)), train.labels.numpy())
    expected = torch.as_tensor(ridge.predict(vec.transform(reference_docs(test))))[:, None]
    with torch.no_grad():
        out = adapter.forward(test.input_ids, test.attention_mask)[0].double()
    assert out.shape == (150, 1) and torch.allclose(out, expected, atol=1e-5)


def test_settings_are_chosen_on_validation_only():
    train, val = bow_split(300, 1), bow_split(100, 2)
    adapter = create_model("bow-linear", spec())
    report = adapter.fit(train, val)
    grid = [h for h in report.history if "C" in h]
    assert len(grid) == 2 * 2 * 4  # sublinear_tf x min_df x C
    best = max(h["accuracy"] for h in grid)
    assert report.val_accuracy == best == adapter.selected["accuracy"]
    assert report.history[-1]["selected_on"] == "val" and report.epochs == 0


def test_majority_answers_the_train_mode():
    ids = torch.randint(1, V, (6, L))
    mask = torch.ones(6, L, dtype=torch.bool)
    train = EncodedSplit(ids, mask, torch.tensor([0, 1, 1, 2, 1, 0]))  # mode 1 (3 of 6)
    adapter = create_model("majority", spec(3))
    adapter.fit(train, train)
    other = torch.randint(1, V, (5, 7))
    d = adapter.predict(other, torch.ones(5, 7, dtype=torch.bool))
    assert d.logits.argmax(1).tolist() == [1] * 5 and d.exit_block.tolist() == [1] * 5
    assert torch.allclose(d.logits[0], torch.tensor([2 / 6, 3 / 6, 1 / 6]).log())  # softmax = the train prior
    # regression: the train mean (of the standardized labels)
    reg = create_model("majority", spec(1, "regression"))
    reg.fit(EncodedSplit(ids, mask, torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0, 9.0])), EncodedSplit(ids, mask, torch.zeros(6)))
    assert reg.predict(other, torch.ones(5, 7, dtype=torch.bool)).logits.flatten().tolist() == pytest.approx([4.0] * 5)


def test_on_a_bag_of_words_task_bow_linear_wins_and_majority_is_the_base_rate():
    train, val, test = (bow_split(n, s) for n, s in ((400, 7), (150, 8), (300, 9)))
    bow, maj = create_model("bow-linear", spec()), create_model("majority", spec())
    bow.fit(train, val)
    maj.fit(train, val)
    mode = int(torch.bincount(train.labels).argmax())
    base_rate = float((test.labels == mode).float().mean())
    assert 0.55 < base_rate < 0.9  # an unbalanced task: the floor is not 50%
    bow_acc = float((bow.predict(test.input_ids, test.attention_mask).logits.argmax(1) == test.labels).float().mean())
    maj_acc = float((maj.predict(test.input_ids, test.attention_mask).logits.argmax(1) == test.labels).float().mean())
    assert bow_acc >= 0.95
    assert maj_acc == pytest.approx(base_rate)


@pytest.mark.parametrize("name", ["majority", "bow-linear"])
def test_fitted_checkpoint_round_trip_is_exact(name, tmp_path):
    train, val, test = bow_split(200, 1, 3), bow_split(80, 2, 3), bow_split(50, 3, 3)
    adapter = create_model(name, spec(3))
    adapter.fit(train, val)
    adapter.save(tmp_path)
    loaded = load_model(tmp_path)
    assert type(loaded).name == name and loaded.spec == adapter.spec
    a, b = adapter.module().state_dict(), loaded.module().state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) and a[k].dtype == b[k].dtype for k in a)
    assert torch.equal(adapter.predict(test.input_ids, test.attention_mask).logits,
                       loaded.predict(test.input_ids, test.attention_mask).logits)
    assert loaded.fit_report == adapter.fit_report
    assert not list(tmp_path.glob("*.pkl")) and not list(tmp_path.glob("*.joblib"))  # safetensors + JSON only


def test_operations_and_size_are_measured():
    train, val = bow_split(200, 1, 3), bow_split(80, 2, 3)
    bow = create_model("bow-linear", spec(3))
    bow.fit(train, val)
    D, K, C = bow.net.n_features, 3, 3
    for length in (5, 8):
        rec = count_ops(bow, length)
        assert rec.uncounted == {} and rec.macs["fp32"] == (2 * length - 1) * K  # one coef row per n-gram position
        assert rec.op_calls["searchsorted"] == 1
    cost = DepthCost.measure(bow)  # every count is a polynomial of degree <= 2 in the length
    assert cost.exits == [1] and cost.n_blocks == 1
    size = measure_size(bow)
    # the key table (int32), idf and coefficients (with the unknown n-gram's row), intercept, class map
    assert size.params == 2 * (D + 1) + (D + 1) * K + K + C
    assert size.total_bits == 32 * size.params
    maj = create_model("majority", spec(3))
    assert count_ops(maj, 8).total_macs == 0 and measure_size(maj).params == 3


def test_measurement_of_a_model_without_exits():
    train, val, test = bow_split(200, 1), bow_split(80, 2), bow_split(60, 3)
    bow = create_model("bow-linear", spec())
    bow.fit(train, val)
    out = measure_accuracy_and_exits(bow, test, DepthCost.measure(bow))
    assert out.exits is None and 0.9 <= out.accuracy.value <= 1.0
    assert out.ops.per_sample_mean.macs["fp32"] > 0 and out.ops.macs_reduction_from_exits == 0.0
    # regression majority: a constant answer has no Pearson r, and the record says so instead of a number
    reg_train, reg_val, reg_test = (bow_split(n, s, regression=True) for n, s in ((200, 1), (80, 2), (60, 3)))
    maj = create_model("majority", spec(1, "regression"))
    maj.fit(reg_train, reg_val)
    rec = measure_accuracy_and_exits(maj, reg_test, DepthCost.measure(maj)).accuracy
    assert rec.value is None and rec.spearman is None and rec.ci95 == (None, None)
    assert "undefined (constant prediction)" in rec.undefined
    assert not math.isnan(rec.rmse) and rec.rmse > 0  # its error is still a number


def test_every_run_plans_the_floors_once_per_task():
    from beexbench.config import load_config
    from beexbench.runner.run import config_fingerprint

    cfg = load_config("smoke", models=["fp32"], seeds=[3, 4])
    assert cfg.floors is True
    assert cfg.planned_models() == [("fp32", [3, 4]), ("majority", [3]), ("bow-linear", [3])]
    off = load_config("smoke", models=["fp32", "bow-linear"], seeds=[3, 4], floors=False)
    assert off.planned_models() == [("fp32", [3, 4]), ("bow-linear", [3, 4])]
    assert config_fingerprint(cfg) != config_fingerprint(load_config("smoke", models=["fp32"], seeds=[3, 4], floors=False))


def test_no_floors_flag_and_config_key(tmp_path):
    from typer.testing import CliRunner

    from beexbench.cli import app
    from beexbench.config import load_config
    from beexbench.errors import BeexError

    suite = tmp_path / "s.toml"
    suite.write_text('suite = "s"\nfloors = false\n')
    assert load_config(config_file=suite).floors is False
    suite.write_text('suite = "s"\nfloors = "no"\n')
    with pytest.raises(BeexError, match="'floors' has the wrong type"):
        load_config(config_file=suite)
    suite.write_text('suite = "s"\nfloor = false\n')
    with pytest.raises(BeexError, match="unknown config key 'floor'"):
        load_config(config_file=suite)
    res = CliRunner().invoke(app, ["run", "--help"])
    assert "--no-floors" in res.output


def test_fit_takes_seconds_on_a_realistic_split():
    """The floors are cheap: the whole validation grid on 2,000 texts fits in seconds."""
    import time

    train, val = bow_split(2000, 11), bow_split(400, 12)
    start = time.perf_counter()
    create_model("bow-linear", spec()).fit(train, val)
    assert time.perf_counter() - start < 60
