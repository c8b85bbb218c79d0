"""Issue 14: the typed ModelSpec tree - validated once when made (every problem at once), one place
for each default, registered with each model's class, and ``create_model`` builds exactly what
``beexbench run`` trains."""
from __future__ import annotations

import dataclasses
import json
import typing

import pytest
import torch

from beexbench.adapters.base import TaskSpec
from beexbench.adapters.registry import create_model, get_adapter_class, list_models
from beexbench.adapters.roles import KINDS, Role
from beexbench.adapters.spec import RULE_NAMES, RULES, SECTIONS, CalibrationSpec, ExitSpec, LossSpec, ModelSpec
from beexbench.config import load_config
from beexbench.errors import ConfigError
from beexbench.models.attention import ATTENTION_PROBS
from beexbench.models.encoder import EncoderConfig
from beexbench.models.ffn import FFN_KINDS
from beexbench.models.losses import LOSSES
from beexbench.models.quantizers import ESTIMATORS
from beexbench.training.config import TrainConfig
from beexbench.training.loop import SCHEDULES
from conftest import write_tiny_suite

SPEC = TaskSpec("t", 3, vocab_size=40, max_len=12)
SPEC_MODELS = [n for n in list_models() if get_adapter_class(n).uses_model_spec]


def test_allowed_names_are_literal_types_of_the_modules_that_own_them():
    hints = {cls: typing.get_type_hints(cls) for cls in (EncoderConfig, TrainConfig, LossSpec, ExitSpec)}
    assert typing.get_args(hints[EncoderConfig]["estimator"]) == ESTIMATORS
    assert typing.get_args(hints[EncoderConfig]["ffn"]) == FFN_KINDS
    assert typing.get_args(hints[EncoderConfig]["attention_probs"]) == ATTENTION_PROBS
    assert typing.get_args(hints[TrainConfig]["schedule"]) == SCHEDULES
    assert typing.get_args(hints[LossSpec]["kind"]) == LOSSES
    assert typing.get_args(hints[ExitSpec]["rule"]) == RULE_NAMES == tuple(RULES)[:len(RULE_NAMES)]


def test_a_spec_and_its_sections_are_frozen():
    spec = ModelSpec()
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.encoder = EncoderConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.train.lr = 1.0
    assert hash(spec) == hash(ModelSpec())  # plain values all the way down


def test_every_problem_is_found_when_the_spec_is_made():
    doc = {"encoder": {"estimator": "bogus", "ffn": "mlp", "weight_bits": 8, "exit_heads": "yes", "d_modl": 3},
           "train": {"epochs": 0, "schedule": "step"}, "loss": {"kind": "focal", "tau": 0},
           "exit": {"rule": "fractional-entropy"}, "calibration": {"param": "delta", "grid": [0.1, "x"]}, "extra": {}}
    with pytest.raises(ConfigError) as err:
        ModelSpec.from_dict(doc)
    problems = err.value.problems
    assert all(p and "\n" not in p for p in problems)
    for expected in ("unknown key 'model.extra'", "unknown key 'model.encoder.d_modl'",
                     "'model.encoder.estimator' is 'bogus': use one of g, ste", "'model.encoder.ffn' is 'mlp'",
                     "'model.encoder.weight_bits' is 8: use one of 1, 32", "'model.encoder.exit_heads' must be bool, got str",
                     "'model.train.epochs' must be an integer >= 1, got 0", "'model.train.schedule' is 'step': use one of cosine, linear",
                     "'model.loss.kind' is 'focal'", "'model.loss.tau' must be a finite number > 0, got 0",
                     "'model.exit.delta' must be set: exit rule 'fractional-entropy' needs it",
                     "'model.calibration.grid' must be a list of finite numbers, got [0.1, 'x']"):
        assert any(expected in p for p in problems), expected


def test_a_bad_name_is_refused_before_any_training():
    """The issue's example: estimator "bogus" used to surface at the first training step."""
    with pytest.raises(ConfigError, match="'model.encoder.estimator' is 'bogus'"):
        create_model("beexformer", SPEC, {"encoder": {"estimator": "bogus"}})


def test_the_calibration_sweeps_a_parameter_of_the_rule():
    cls = get_adapter_class("beexformer")
    assert cls.config_problems({"exit": {"rule": "final"}}) == [
        "'model.calibration.param' is 'delta', which exit rule 'final' does not take: set 'model.calibration.grid' to [] (no calibration)"]
    assert cls.config_problems({"exit": {"rule": "final"}, "calibration": {"grid": []}}) == []
    assert cls.config_problems({"calibration": {"param": "threshold"}}) == [
        "'model.calibration.param' is 'threshold', which exit rule 'fractional-entropy' does not take: use one of delta, min_exit, answer"]


def test_overrides_merge_nested_and_dotted_and_report_every_unknown_key():
    spec = ModelSpec().merged({"encoder": {"d_model": 64}, "train.epochs": 2})
    assert spec.encoder.d_model == 64 and spec.train.epochs == 2 and spec.encoder.n_heads == 4
    with pytest.raises(ConfigError) as err:
        ModelSpec().merged({"encoder": {"d_modle": 1, "n_head": 2}, "trian": {}})
    assert [p.split(":")[0] for p in err.value.problems] == [
        "unknown key 'model.encoder.d_modle'", "unknown key 'model.encoder.n_head'", "unknown key 'model.trian'"]


# -- one place for each default ------------------------------------------------------------
def test_the_field_defaults_are_the_only_base_defaults():
    """No other table of defaults: ModelSpec() is the section dataclasses' field defaults (the
    128-wide reference size), and a model's registered spec is that plus its classes' own
    ``defaults``; a suite's sizes are explicit overrides, not defaults."""
    import beexbench.adapters.encoder_adapter as encoder_adapter

    assert not hasattr(encoder_adapter, "BASE_DEFAULTS")
    spec = ModelSpec()
    assert (spec.encoder.d_model, spec.encoder.n_blocks, spec.encoder.d_ff, spec.train.epochs) == (128, 6, 256, 6)
    assert all(getattr(spec, name) == cls() for name, cls in SECTIONS.items())
    beex = get_adapter_class("beexformer")
    assert beex.default_spec() == ModelSpec().merged(beex.defaults)
    assert load_config("default").model["encoder"]["d_model"] == 64  # the default suite chooses its size explicitly


@pytest.mark.parametrize("name", SPEC_MODELS)
def test_every_registered_spec_is_valid_and_round_trips(name):
    cls = get_adapter_class(name)
    for problem in ("classification", "regression"):
        if cls.problem_refusal(problem):
            continue
        spec = cls.default_spec(problem)
        assert spec.problems(problem) == []
        doc = json.loads(json.dumps(spec.to_dict()))  # plain JSON, as checkpoints and records hold it
        assert ModelSpec.from_dict(doc) == spec


def test_the_registered_spec_is_what_the_model_is_built_with():
    model = create_model("beexformer-ste", SPEC)
    assert model.config == get_adapter_class("beexformer-ste").default_spec().to_dict()
    assert model.config["encoder"]["estimator"] == "ste" and model.config["loss"]["kind"] == "soft_routing"


@pytest.mark.parametrize("name", ["beexformer", "fp32", "transformer", "pabee-style", "majority"])
def test_create_model_builds_what_the_runner_trains(name, tmp_path, monkeypatch):
    """Same suite settings and seed -> same module structure and the same initial weights."""
    from beexbench.runner import models as store

    cfg = load_config(config_file=write_tiny_suite(tmp_path, models=(name,)))
    cls = get_adapter_class(name)
    seen = {}

    def fit(self, *args, **kwargs):
        seen["module"] = str(self.module())
        seen["state"] = {k: v.clone() for k, v in self.module().state_dict().items()}
        raise RuntimeError("stop after build")

    monkeypatch.setattr(cls, "fit", fit)
    with pytest.raises(RuntimeError, match="stop after build"):
        store.obtain_model(name, SPEC, None, None, cfg, 7)
    model = create_model(name, SPEC, cfg.model if cls.uses_model_spec else {}, seed=7)
    assert str(model.module()) == seen["module"]
    state = model.module().state_dict()
    assert state.keys() == seen["state"].keys() and all(torch.equal(state[k], seen["state"][k]) for k in state)
    if cls.uses_model_spec:
        assert model.config["encoder"]["d_model"] == 16 and model.config["train"]["seed"] == 7


# -- roles ---------------------------------------------------------------------------------
def test_every_model_declares_its_role():
    roles = {n: get_adapter_class(n).role for n in list_models()}
    assert roles["beexformer"] == Role("subject")
    assert roles["beexformer-packed"] == roles["beexformer-packed-int4"] == roles["beexformer-packed-fp32emb"] == Role("deployment", "beexformer")
    assert roles["beexformer-a5-packed"] == Role("deployment", "beexformer-a5")
    assert all(r == Role("ablation", "beexformer") for n, r in roles.items() if n.startswith("beexformer-") and r.kind != "deployment")
    assert roles["fp32"] == Role("full-precision reference")
    assert roles["majority"] == roles["bow-linear"] == Role("reference floor")
    assert {str(roles[n]) for n in ("fp32-no-ee", "int8-dynamic", "transformer", "deebert-style")} == {"baseline"}


def test_roles_round_trip_as_text_and_refuse_unknown_kinds():
    for role in [Role(k) for k in KINDS if k not in ("ablation", "deployment")] + [Role("ablation", "x"), Role("deployment", "y")]:
        assert Role.parse(str(role)) == role
    with pytest.raises(ValueError):
        Role("rival")
    with pytest.raises(ValueError):
        Role("ablation")  # of what?
