"""Issue 15: one validation pass over the whole resolved configuration, before any data is
loaded or any model built: every problem at once, one line each."""
from __future__ import annotations

import pytest
import torch

from beexbench.adapters.base import TaskSpec
from beexbench.adapters.registry import get_adapter_class, list_models
from beexbench.config import load_config
from beexbench.errors import ConfigError
from beexbench.runner.models import nonfinite_weight
from beexbench.validate import MAX_FORCED_THREADS, check, usable_cores, validate
from conftest import write_tiny_suite


def _one_line_each(problems: list[str]) -> None:
    assert problems and all(p and "\n" not in p for p in problems)


@pytest.mark.parametrize("suite", ["smoke", "default", "paper"])
def test_builtin_suites_are_valid(suite):
    assert validate(load_config(suite)) == []


def test_every_model_spec_problem_is_reported_at_once():
    cfg = load_config("smoke", models=["beexformer", "fp32"])
    cfg.model = {
        "encoder": {"estimator": "gg", "ffn": "mlp", "attention_probs": "sparse", "d_model": 30, "n_heads": 4,
                    "n_blocks": 0, "dropout": 1.0, "token_dropout": 1.5},
        "train": {"epochs": 0, "batch_size": 0, "lr": float("inf")},
        "loss": {"kind": "focal"},
    }
    problems = validate(cfg)
    _one_line_each(problems)
    text = "\n".join(problems)
    for expected in ("'model.encoder.estimator' is 'gg': use one of g, ste", "'model.encoder.ffn' is 'mlp'",
                     "'model.encoder.attention_probs' is 'sparse'", "'model.encoder.d_model' (30) must be divisible by 'model.encoder.n_heads' (4)",
                     "'model.encoder.n_blocks' must be an integer >= 1, got 0", "'model.encoder.dropout' must be a finite number >= 0 and < 1",
                     "'model.encoder.token_dropout' must be a finite number >= 0 and < 1, got 1.5",
                     "'model.train.epochs' must be an integer >= 1, got 0", "'model.train.batch_size' must be an integer >= 1, got 0",
                     "'model.train.lr' must be a finite number > 0, got inf", "'model.loss.kind' is 'focal'"):
        assert expected in text, expected
    # a suite-wide setting shared by several models is one line naming them
    assert sum("'model.train.epochs'" in p for p in problems) == 1
    assert "(models beexformer, fp32)" in next(p for p in problems if "'model.train.epochs'" in p)


@pytest.mark.parametrize("train", [{"lr": -0.1}, {"lr": float("nan")}, {"lr": 0}])
def test_learning_rate_must_be_positive_and_finite(train):
    cfg = load_config("smoke", models=["fp32"], floors=False)
    cfg.model = {"train": train}
    assert [p for p in validate(cfg) if "'model.train.lr' must be a finite number > 0" in p]


def test_unknown_keys_and_model_names_are_named():
    cfg = load_config("smoke", models=["fp32"], floors=True)
    cfg.model = {"encoder": {"d_modle": 64}}
    cfg.model_overrides = {"majority": {"strategy": "prior"}, "fp33": {}}
    problems = validate(cfg)
    _one_line_each(problems)
    assert any("unknown key 'model.encoder.d_modle'" in p and "(model fp32)" in p for p in problems)
    assert any("'majority" in p and "strategy" in p for p in problems)  # a floor's own config check
    assert any(p.startswith("unknown model 'fp33'") for p in problems)


def test_overrides_for_models_the_run_does_not_use_are_not_checked():
    cfg = load_config("paper", models=["fp32"])  # the paper suite carries overrides for models not run here
    assert validate(cfg) == []


def test_tasks_latency_target_and_run_shape(tmp_path):
    cfg = load_config("smoke", models=["fp32", "fp32"], target="tpu", latency_batch_sizes=[0, 4])
    cfg.tasks = ["rotten_tomatos", f"csv:{tmp_path / 'missing.csv'}?text=text&label=label",
                 f"csv:{tmp_path / 'x.csv'}?text=text&lable=label"]
    cfg.latency.min_iters = 0
    problems = validate(cfg)
    _one_line_each(problems)
    text = "\n".join(problems)
    for expected in ("'models' lists 'fp32' more than once", "unknown target 'tpu'", "unknown task 'rotten_tomatos'",
                     "'latency.batch_sizes (--batch-sizes)' must be an integer >= 1, got 0",
                     "'latency.min_iters' must be an integer >= 1, got 0", "missing.csv not found", "unknown option 'lable'"):
        assert expected in text, expected


@pytest.mark.parametrize("threads", [0, -1, usable_cores() + 1, 5000, 100000])
def test_threads_beyond_the_usable_cores_are_refused(threads):
    problems = validate(load_config("smoke", threads=threads))
    assert len(problems) == 1 and problems[0].startswith(f"'threads' is {threads}, but this process may use {usable_cores()} core(s)")
    assert "--force-threads" in problems[0]


def test_force_threads_allows_oversubscription_within_a_hard_limit():
    assert validate(load_config("smoke", threads=usable_cores())) == []
    assert validate(load_config("smoke", threads=usable_cores() + 1, force_threads=True)) == []
    assert validate(load_config("smoke", threads=MAX_FORCED_THREADS + 1, force_threads=True)) == [
        f"'threads' must be an integer >= 1 and <= {MAX_FORCED_THREADS}, got {MAX_FORCED_THREADS + 1}"]
    assert validate(load_config("smoke", threads=0, force_threads=True))


def test_force_threads_keeps_old_runs_the_same_job():
    """Absent unless set, so runs saved before the option existed keep their fingerprint."""
    assert "force_threads" not in load_config("smoke").to_dict()
    assert load_config("smoke", force_threads=True).to_dict()["force_threads"] is True


def test_validation_leaves_the_global_rng_alone():
    torch.manual_seed(123)
    state = torch.get_rng_state()
    validate(load_config("default"))
    assert torch.equal(state, torch.get_rng_state())


@pytest.mark.parametrize("name", list_models())
def test_every_model_builds_clean_by_default(name):
    """The default config of every registered model passes its own check, and a freshly built
    model holds no NaN or infinity (so the runner's weight check never refuses a sound model)."""
    cls = get_adapter_class(name)
    for problem in ("classification", "regression"):
        if not cls.problem_refusal(problem):
            assert cls.config_problems({}, problem) == []
    model = cls.build(cls.resolve_settings({}), TaskSpec("t", 2, vocab_size=40, max_len=8))
    assert nonfinite_weight(model) is None


def test_the_runner_validates_before_loading_any_data(tmp_path, monkeypatch):
    """The second model's bad setting stops the run before the task loads or the first model trains."""
    import beexbench.runner.run as run_mod
    from beexbench.runner import run_suite

    monkeypatch.setenv("BEEXBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(run_mod, "load_task", lambda *a, **k: pytest.fail("data loaded before validation"))
    cfg = load_config(None, write_tiny_suite(tmp_path, models=("fp32", "beexformer")))
    cfg.model_overrides = {"beexformer": {"encoder": {"n_heads": 3}}}
    with pytest.raises(ConfigError) as err:
        run_suite(cfg)
    assert err.value.problems == ["'model.encoder.d_model' (16) must be divisible by 'model.encoder.n_heads' (3) (model beexformer)"]
    assert not (tmp_path / "results").exists() and not (tmp_path / "models").exists()


def test_check_raises_every_problem():
    with pytest.raises(ConfigError) as err:
        check(load_config("smoke", threads=0, latency_batch_sizes=[0], models=["nope"]))
    assert len(err.value.problems) == 3 and str(err.value).count("\n") == 2
