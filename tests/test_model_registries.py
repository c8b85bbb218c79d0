"""Issue 14: exit rules, FFNs, exit losses and sign estimators are registries (the generic
``beexbench._registry.Registry``), not if-chains: the built-ins keep their names and order, are
added on first use (importing registers nothing), and a plugin registered at run time or through
an entry-point group (``beexbench.exit_rules``, ``beexbench.ffns``, ``beexbench.exit_losses``,
``beexbench.estimators``) is a valid ModelSpec name and is what the model builds and trains with."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

from beexbench.adapters.base import TaskSpec
from beexbench.adapters.registry import create_model
from beexbench.adapters.spec import RULES, ModelSpec, make_rule, rule_params
from beexbench.errors import BeexError, ConfigError
from beexbench.models.exits import (EXIT_RULES, RULE_NAMES, ExitRule, ExitState, FractionalEntropy, register_exit_rule,
                                    rule_class)
from beexbench.models.ffn import FFN_KINDS, FFNS, SLFN, GeluFFN, make_ffn, register_ffn
from beexbench.models.layers import QuantLinear
from beexbench.models.losses import EXIT_LOSSES, LOSSES, exit_weights, register_exit_loss
from beexbench.models.quantizers import ESTIMATORS, SIGN_ESTIMATORS, binary_sign, register_estimator, sign_ste

SPEC = TaskSpec("t", 3, vocab_size=40, max_len=12)
TINY = {"encoder": {"d_model": 8, "n_heads": 2, "n_blocks": 3, "d_ff": 16, "dropout": 0.0}}
ROOT = Path(__file__).resolve().parent.parent


def test_built_in_names_and_order_are_unchanged():
    assert FFN_KINDS == ("slfn", "slfn3", "gelu") == tuple(FFNS.names(sort=False))[:3]
    assert ESTIMATORS == ("g", "ste") == tuple(SIGN_ESTIMATORS.names(sort=False))[:2]
    assert LOSSES == ("soft_routing", "depth_weighted", "uniform", "final") == tuple(EXIT_LOSSES.names(sort=False))[:4]
    assert RULE_NAMES == ("final", "fractional-entropy", "absolute-entropy", "patience", "prediction-change", "static")
    assert tuple(RULES)[:6] == RULE_NAMES and RULES["fractional-entropy"] is FractionalEntropy
    assert FFNS.get("slfn") is SLFN and FFNS.get("gelu") is GeluFFN and SIGN_ESTIMATORS.get("ste") is sign_ste
    # the old error messages of the building functions
    with pytest.raises(ValueError, match=r"unknown ffn 'mlp': use one of \('slfn', 'slfn3', 'gelu'"):
        make_ffn("mlp", 8, 16, {}, 0.0)
    with pytest.raises(ValueError, match="unknown sign estimator 'gg'"):
        binary_sign(torch.zeros(2, requires_grad=True), "gg")
    with pytest.raises(BeexError, match="unknown exit rule 'nope': use one of final, fractional-entropy"):
        make_rule({"rule": "nope"})


_IMPORT_ALONE = r"""
import json
import beexbench.models.exits, beexbench.models.ffn, beexbench.models.losses, beexbench.models.quantizers
import beexbench.models.encoder, beexbench.adapters.spec
from beexbench.models.exits import EXIT_RULES
from beexbench.models.ffn import FFNS
from beexbench.models.losses import EXIT_LOSSES
from beexbench.models.quantizers import SIGN_ESTIMATORS
print(json.dumps([[r.kind, len(r._entries), r._entry_points_loaded] for r in (EXIT_RULES, FFNS, EXIT_LOSSES, SIGN_ESTIMATORS)]))
"""


def test_importing_the_model_modules_registers_nothing():
    out = subprocess.run([sys.executable, "-c", _IMPORT_ALONE], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [
        ["exit rule", 0, False], ["ffn", 0, False], ["exit loss", 0, False], ["sign estimator", 0, False]]


# -- plugins registered at run time -----------------------------------------------------------
class TinyFFN(nn.Module):
    def __init__(self, d_model: int, d_ff: int, linear_kwargs: dict, dropout: float = 0.0) -> None:
        super().__init__()
        self.w = QuantLinear(d_model, d_model, **linear_kwargs)

    def forward(self, h):
        return torch.relu(self.w(h))


class _Counted(torch.autograd.Function):
    calls = 0

    @staticmethod
    def forward(ctx, x):
        _Counted.calls += 1
        return x.ge(0).to(x.dtype) * 2 - 1

    @staticmethod
    def backward(ctx, grad):
        return grad


def last_two(exit_logits, **_):
    n, k = exit_logits[0].shape[0], len(exit_logits)
    w = torch.zeros(n, k)
    w[:, -2:] = 0.5
    return w


class MaxProb(ExitRule):
    name = "max-prob"
    problems = ("classification",)

    def __init__(self, threshold: float, min_exit: int = 1):
        self.threshold, self.min_exit = float(threshold), int(min_exit)

    def step(self, block, logits, state, last):
        done = (torch.softmax(logits, -1).amax(-1) >= self.threshold) & (block >= self.min_exit)
        return done | last, logits, ExitState()

    def to_dict(self):
        return {"rule": self.name, "threshold": self.threshold, "min_exit": self.min_exit}


@pytest.fixture
def plugins():
    register_ffn("tiny-ffn", TinyFFN)
    register_estimator("counted", _Counted.apply)
    register_exit_loss("last-two")(last_two)  # or as a decorator
    register_exit_rule("max-prob", MaxProb)
    yield
    for registry, name in ((FFNS, "tiny-ffn"), (SIGN_ESTIMATORS, "counted"), (EXIT_LOSSES, "last-two"),
                           (EXIT_RULES, "max-prob")):
        registry.unregister(name)


def test_a_plugin_registered_at_run_time_is_a_valid_spec_name_and_is_built(plugins):
    settings = {"encoder": {**TINY["encoder"], "ffn": "tiny-ffn", "estimator": "counted"},
                "loss": {"kind": "last-two"}, "exit": {"rule": "max-prob", "threshold": 0.9},
                "calibration": {"param": "threshold", "grid": [0.5, 0.9]}}
    spec = ModelSpec.from_dict(settings)
    assert (spec.encoder.ffn, spec.loss.kind, spec.exit.rule) == ("tiny-ffn", "last-two", "max-prob")
    assert rule_params("max-prob") == ("threshold", "min_exit") and RULES["max-prob"] is MaxProb
    with pytest.raises(ConfigError) as err:
        ModelSpec.from_dict({"encoder": {"ffn": "mlp"}, "exit": {"rule": "max-prob"}})
    assert "'model.encoder.ffn' is 'mlp': use one of slfn, slfn3, gelu, tiny-ffn" in err.value.problems
    assert "'model.exit.threshold' must be set: exit rule 'max-prob' needs it" in err.value.problems

    torch.manual_seed(0)
    adapter = create_model("beexformer", SPEC, settings)
    assert all(isinstance(b.ffn, TinyFFN) for b in adapter.model.blocks)
    assert isinstance(adapter.exit_rule(), MaxProb) and adapter.exit_rule().threshold == 0.9
    assert [r.threshold for r in adapter.rule_variants("threshold", [0.6, 0.7])] == [0.6, 0.7]
    ids, mask = torch.randint(1, 40, (4, 6)), torch.ones(4, 6, dtype=torch.bool)
    adapter.model.train()
    _Counted.calls = 0
    exits = adapter.forward(ids, mask)
    assert _Counted.calls > 0  # the registered estimator binarized in training
    assert torch.equal(exit_weights("last-two", exits), last_two(exits))
    adapter.loss(exits, torch.tensor([0, 1, 2, 0])).backward()
    assert adapter.model.blocks[0].ffn.w.weight.grad is not None
    adapter.model.eval()
    assert adapter.predict(ids, mask).exit_block.min() >= 1


def test_a_name_is_registered_once_and_after_the_built_ins(plugins):
    assert FFNS.names(sort=False)[:4] == ["slfn", "slfn3", "gelu", "tiny-ffn"]
    for register, name in ((register_ffn, "slfn"), (register_exit_rule, "final"), (register_exit_loss, "uniform"),
                           (register_estimator, "g"), (register_ffn, "tiny-ffn")):
        with pytest.raises(ValueError, match=f"'{name}' is already registered"):
            register(name, object())
    register_ffn("tiny-ffn", GeluFFN, replace=True)
    assert FFNS.get("tiny-ffn") is GeluFFN and FFNS.get("slfn") is SLFN


def test_a_registered_rule_must_be_an_exit_rule_and_fit_the_task(plugins):
    register_exit_rule("not-a-rule", len)
    try:
        with pytest.raises(BeexError, match=r"exit rule 'not-a-rule' \(registered at run time\) is not an ExitRule subclass"):
            rule_class("not-a-rule")
        with pytest.raises(ConfigError, match="is not an ExitRule subclass"):
            ModelSpec.from_dict({"exit": {"rule": "not-a-rule"}})
        with pytest.raises(BeexError, match="'max-prob' is not defined for regression tasks: use one of final, patience, "
                                            "prediction-change, static$"):
            make_rule({"rule": "max-prob", "threshold": 0.5}, "regression")
    finally:
        EXIT_RULES.unregister("not-a-rule")


# -- plugins from entry points ----------------------------------------------------------------
_PACKAGE = textwrap.dedent('''
    import torch
    from torch import nn
    from beexbench.models.exits import FractionalEntropy

    class HalfFFN(nn.Module):
        def __init__(self, d_model, d_ff, linear_kwargs, dropout=0.0):
            super().__init__()
            self.w = nn.Linear(d_model, d_model)
        def forward(self, h):
            return 0.5 * self.w(h)

    class Strict(FractionalEntropy):
        name = "strict-entropy"

    def even(exit_logits, **_):
        n, k = exit_logits[0].shape[0], len(exit_logits)
        return torch.full((n, k), 1.0 / k)

    def identity_sign(x):
        return x + (x.ge(0).to(x.dtype) * 2 - 1 - x).detach()
''')

_ENTRY_POINTS = textwrap.dedent("""
    [beexbench.ffns]
    half = beex_parts:HalfFFN
    [beexbench.exit_rules]
    strict-entropy = beex_parts:Strict
    broken-rule = beex_parts_missing:Rule
    [beexbench.exit_losses]
    even = beex_parts:even
    [beexbench.estimators]
    identity = beex_parts:identity_sign
""")

_USE = textwrap.dedent("""
    import json, sys, torch
    from beexbench.adapters.base import TaskSpec
    from beexbench.adapters.registry import create_model
    from beexbench.adapters.spec import ModelSpec, make_rule
    from beexbench.errors import BeexError, ConfigError
    settings = {"encoder": {"d_model": 8, "n_heads": 2, "n_blocks": 2, "d_ff": 16, "ffn": "half", "estimator": "identity"},
                "loss": {"kind": "even"}, "exit": {"rule": "strict-entropy", "delta": 0.1}}
    assert "beex_parts" not in sys.modules
    spec = ModelSpec.from_dict(settings)
    adapter = create_model("beexformer", TaskSpec("t", 2, 30, 8), settings)
    ids, mask = torch.randint(1, 30, (3, 5)), torch.ones(3, 5, dtype=torch.bool)
    adapter.loss(adapter.forward(ids, mask), torch.tensor([0, 1, 1])).backward()
    out = {"ffn": type(adapter.model.blocks[0].ffn).__name__, "rule": type(adapter.exit_rule()).__name__}
    try:
        ModelSpec.from_dict({"exit": {"rule": "broken-rule", "delta": 0.1}})
    except ConfigError as exc:
        out["broken"] = exc.problems
    try:
        make_rule({"rule": "fractional-entropy", "delta": 0.1}, "regression")
    except BeexError as exc:
        out["hint"] = str(exc)
    print(json.dumps(out))
""")


def test_plugins_from_entry_point_groups(tmp_path):
    (tmp_path / "beex_parts.py").write_text(_PACKAGE)
    info = tmp_path / "beex_parts-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: beex-parts\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text(_ENTRY_POINTS)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(tmp_path), str(ROOT), os.environ.get("PYTHONPATH")) if p)}
    out = subprocess.run([sys.executable, "-c", _USE], capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["ffn"] == "HalfFFN" and got["rule"] == "Strict"
    (line,) = got["broken"]
    assert line.startswith("cannot load 'broken-rule' from beex_parts_missing:Rule (entry-point:beex-parts)") and "\n" not in line
    # a plugin that fails to load is left out of the hint, the working one is offered
    assert got["hint"].endswith("use one of final, patience, prediction-change, static"), got["hint"]
