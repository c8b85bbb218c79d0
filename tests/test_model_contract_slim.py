"""Issue 27's slim model contract. Deployments hold their source model rather than inheriting from
it: no registered deployment has a trained model's class in its MRO (the variants that are the same
network under another exit rule excepted, and checked to be only that), its registered settings are
its source's, a derived one keeps the trained instance it came from in ``source``, one trained
directly trains a source and derives from it, one loaded from its files has none. ``build`` takes a
ModelSpec only: the registry resolves a run's overrides once; a dict is a TypeError naming the fix."""
from __future__ import annotations

import pytest
import torch

from beexbench.adapters.base import TaskSpec
from beexbench.adapters.encoder_adapter import EncoderAdapter, SpecEncoderBase
from beexbench.adapters.protocols import Derived, derived_source
from beexbench.adapters.registry import create_model, get_adapter_class, list_models, load_model
from beexbench.adapters.spec import ModelSpec
from beexbench.training.batches import EncodedSplit
from conftest import runnable

pytestmark = pytest.mark.usefixtures("one_thread")

SPEC = TaskSpec(task="slim", num_labels=3, vocab_size=50, max_len=12)
TINY = {"encoder": {"d_model": 16, "n_heads": 2, "n_blocks": 3, "d_ff": 32}, "train": {"epochs": 1, "batch_size": 16}}
# the same trained network under another exit rule: each IS its source model with other defaults (the
# exit rule and its calibration), saved and loaded as that model is, so it stays a subclass of it
SAME_NETWORK_OTHER_RULE = {"beexformer-no-ee", "fp32-no-ee"}
BUILT_IN = [n for n in list_models() if get_adapter_class(n).__module__.split(".")[0] in ("beexbench", "baselines")]
DERIVED = [n for n in list_models() if derived_source(get_adapter_class(n))]
DEPLOYMENTS = [n for n in DERIVED if n not in SAME_NETWORK_OTHER_RULE]


def unwrapped(cls: type) -> type:
    """The class an entry point names (the registry subclasses one it registers under another name)."""
    base = cls.__bases__[0]
    return base if (base.__name__, base.__module__) == (cls.__name__, cls.__module__) else cls


def split(n: int, seed: int) -> EncodedSplit:
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(3, SPEC.max_len + 1, (n,), generator=g)
    mask = torch.arange(SPEC.max_len)[None, :] < lengths[:, None]
    ids = torch.randint(1, SPEC.vocab_size, (n, SPEC.max_len), generator=g) * mask
    return EncodedSplit(ids, mask, ids[:, 0] % SPEC.num_labels)


TRAIN, VAL = split(48, 1), split(24, 2)


def test_the_deployments_are_found():
    """The parametrised checks below cover the deployments the tree ships (not an empty list)."""
    assert {"int8-dynamic", "int8-weight-only", "int4-weight-only", "fp32-ort", "int8-ort", "beexformer-packed",
            "beexformer-packed-int4", "beexformer-a5-packed"} <= set(DEPLOYMENTS)


def test_the_known_deployments_no_longer_inherit_what_they_deploy():
    from baselines.fp32 import FP32
    from baselines.int8_dynamic import Int8Dynamic
    from baselines.ort import FP32Ort, Int8Ort
    from baselines.weight_only import Int4WeightOnly, Int8WeightOnly
    from beexbench.adapters.beexformer import BEExformer
    from beexbench.engine.adapter import PackedBEExformer, PackedBEExformerA5

    for cls in (Int8Dynamic, Int8WeightOnly, Int4WeightOnly, FP32Ort, Int8Ort):
        assert not issubclass(cls, FP32) and issubclass(cls, EncoderAdapter)
    for cls in (PackedBEExformer, PackedBEExformerA5):
        assert not issubclass(cls, BEExformer) and issubclass(cls, SpecEncoderBase)
    assert PackedBEExformerA5.source_class() is get_adapter_class("beexformer-a5")


@pytest.mark.parametrize("name", DEPLOYMENTS)
def test_no_deployment_inherits_a_registered_model(name):
    cls = get_adapter_class(name)
    trained = {unwrapped(get_adapter_class(m)) for m in list_models() if not derived_source(get_adapter_class(m))}
    inherited = [k.__name__ for k in unwrapped(cls).__mro__[1:] if k in trained]
    assert not inherited, f"{name} inherits from the trained model classes {inherited}: hold the source instead"
    for problem in ("classification", "regression"):  # its registered settings are what it deploys
        source = get_adapter_class(cls.derived_from)
        if not cls.problem_refusal(problem) and not source.problem_refusal(problem):
            assert cls.default_spec(problem) == source.default_spec(problem)


@pytest.mark.parametrize("name", sorted(SAME_NETWORK_OTHER_RULE))
def test_the_subclassed_variants_differ_from_their_source_in_the_exit_rule_only(name):
    cls = get_adapter_class(name)
    source = get_adapter_class(cls.derived_from)
    assert issubclass(cls, unwrapped(source))
    mine, theirs = cls.default_spec().to_dict(), source.default_spec().to_dict()
    assert {k for k in mine if mine[k] != theirs[k]} == {"exit", "calibration"}


def trained_source(name: str):
    torch.manual_seed(0)
    source = create_model(name, SPEC, TINY)
    source.fit(TRAIN, VAL)
    return source


@pytest.mark.parametrize("name", runnable(DERIVED))
def test_a_derived_model_holds_the_trained_instance_it_came_from(name, tmp_path):
    cls = get_adapter_class(name)
    source = trained_source(cls.derived_from)
    out = cls.derive(source, VAL)
    assert out.source is source and out.spec == source.spec
    out.save(tmp_path)
    assert load_model(tmp_path).source is None  # loaded from its own files: no source


@pytest.mark.parametrize("name", ["int8-dynamic", "fp32-ort", "beexformer-packed"])
def test_fitting_a_deployment_trains_a_source_and_derives_from_it(name):
    """``fit`` on a fresh deployment leaves the trained source in ``source``; deriving from that
    source again gives the same model (same outputs, same exit rule)."""
    cls = get_adapter_class(name)
    torch.manual_seed(0)
    out = create_model(name, SPEC, TINY)
    out.fit(TRAIN, VAL)
    source = out.source
    assert isinstance(source, cls.source_class()) and source.fit_report is not None
    again = cls.derive(source, VAL)
    assert again.exit_rule().to_dict() == out.exit_rule().to_dict()
    with torch.no_grad():
        for a, b in zip(out.forward(VAL.input_ids, VAL.attention_mask), again.forward(VAL.input_ids, VAL.attention_mask)):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-5)


@pytest.mark.parametrize("name", BUILT_IN)
def test_build_takes_a_model_spec_only(name):
    cls = get_adapter_class(name)
    settings = cls.resolve_settings(TINY if cls.uses_model_spec else {}, SPEC.problem)
    if not cls.uses_model_spec:  # settings of their own (the floors): their dict, as before
        assert isinstance(settings, dict) and cls.build(settings, SPEC).config is not None
        return
    assert isinstance(settings, ModelSpec) and settings == cls.resolve_spec(TINY)
    torch.manual_seed(0)
    built = cls.build(settings, SPEC)
    assert built.config == create_model(name, SPEC, TINY).config  # the registry resolves once, the same way
    with pytest.raises(TypeError, match=r"built from a ModelSpec, not a dict: resolve .*resolve_spec\(overrides, problem\)"):
        cls.build(TINY, SPEC)
    assert not issubclass(cls, Derived) or cls.config_problems(TINY) == []  # the check still takes overrides
