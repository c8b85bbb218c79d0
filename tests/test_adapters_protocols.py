"""The slim model contract (issue 27): a core of eight methods on ``ModelAdapter``, and optional
protocols (``beexbench.adapters.protocols``) that a model either inherits or satisfies by defining
their methods; consumers probe them with isinstance / issubclass, never a default hook."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from beexbench.adapters.base import ModelAdapter, TaskSpec
from beexbench.adapters.protocols import (Derived, EarlyExit, Exits, NeedsTrainedInputs, derived_source, exit_layout_of,
                                          exit_rule_of, has_early_exit)
from beexbench.adapters.registry import create_model, get_adapter_class, list_models
from conftest import runnable

CORE = {"build", "fit", "forward", "predict", "save", "load", "precision", "module"}
OPTIONAL = ("exit_layout", "exit_rule", "rule_variants", "supports_early_exit", "derive", "derived_from",
            "trained_inputs", "take_trained")
SPEC = TaskSpec("t", 2, vocab_size=40, max_len=12)
TINY = {"encoder": {"d_model": 16, "n_heads": 2, "n_blocks": 3, "d_ff": 32}}


def test_the_core_is_eight_abstract_methods_and_no_optional_hook():
    assert set(ModelAdapter.__abstractmethods__) == CORE
    assert [name for name in OPTIONAL if hasattr(ModelAdapter, name)] == []


@pytest.mark.parametrize("name", runnable(list_models()))
def test_every_registered_model_declares_its_protocols_consistently(name):
    cls = get_adapter_class(name)
    source = derived_source(cls)
    assert source is None or (source in list_models() and source != name)
    torch.manual_seed(0)
    model = create_model(name, SPEC, TINY if cls.uses_model_spec else {})
    blocks = len(exit_layout_of(model).exit_blocks)
    with torch.no_grad():
        n_exits = len(model.forward(torch.ones(2, 5, dtype=torch.long), torch.ones(2, 5, dtype=torch.bool)))
    # a model with several exits says where they are and which rule it deploys
    assert (n_exits > 1) <= isinstance(model, EarlyExit), f"{name}: {n_exits} exits but no EarlyExit protocol"
    assert has_early_exit(model) == (blocks > 1)
    if not isinstance(model, Exits):
        assert exit_layout_of(model).exit_blocks == (1,) and exit_layout_of(model).n_blocks == 1
        assert exit_rule_of(model) is None


def _bare_plugin() -> type:
    path = Path(__file__).parent / "plugin_pkg" / "beex_example_plugin" / "bare.py"
    spec = importlib.util.spec_from_file_location("beex_example_plugin_bare_protocols", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.ResidualMLPExits


def test_a_plugin_that_only_defines_the_methods_satisfies_the_protocol():
    """tests/plugin_pkg's bare plugin inherits no protocol base: its methods are enough."""
    bare = _bare_plugin()
    assert EarlyExit not in bare.__mro__ and Exits not in bare.__mro__
    assert issubclass(bare, EarlyExit) and issubclass(bare, Exits)
    assert not issubclass(bare, Derived) and not issubclass(bare, NeedsTrainedInputs)


def test_derived_needs_a_source_name_and_derive():
    class Trained:
        derived_from = None

        @classmethod
        def derive(cls, source, val, cost_fn=None):
            return source

    class FromFp32(Trained):
        derived_from = "fp32"

    class NameOnly:
        derived_from = "fp32"

    assert not issubclass(Trained, Derived) and not issubclass(NameOnly, Derived)
    assert issubclass(FromFp32, Derived) and derived_source(FromFp32) == "fp32" and derived_source(Trained) is None
    assert derived_source(get_adapter_class("beexformer-packed")) == "beexformer"
    assert derived_source(get_adapter_class("int8-dynamic")) == "fp32" and derived_source(get_adapter_class("fp32")) is None


def test_without_an_exit_declaration_a_model_has_one_block_and_one_exit():
    model = create_model("majority", SPEC, {})
    assert not isinstance(model, Exits) and not isinstance(model, EarlyExit)
    assert exit_layout_of(model).exit_blocks == (1,) and exit_layout_of(model).n_blocks == 1
    assert exit_rule_of(model) is None and not has_early_exit(model)
    fp32 = create_model("fp32", SPEC, TINY)
    assert isinstance(fp32, EarlyExit) and exit_layout_of(fp32).exit_blocks == (1, 2, 3) and has_early_exit(fp32)
    assert exit_rule_of(fp32) is fp32.rule
