"""Issue 28: every early-exit model judged against static depth (``metrics.static_depth``).

A hand-built early-exit model on a synthetic task where half the samples are answerable at block 1
and half need block 2 gets the verdict "adaptive" under a confidence rule that sends only the hard
ones on; the same network under a rule that stops everyone at block 1 is "degenerate"; a network
whose first exit already answers everything right gets "no better than static depth 1". The paired
test's p is checked by hand; the section round-trips through the codec; an older record reads."""
from __future__ import annotations

import math

import pytest
import torch

from beexbench.adapters.base import ExitLayout, TaskSpec
from beexbench.adapters.registry import create_model
from beexbench.config import LatencySettings
from beexbench.engine import _fused, _native
from beexbench.models.exits import AbsoluteEntropy, FractionalEntropy, Static, simulate
from beexbench.profilers.latency import measure_latency
from beexbench.profilers.ops import DepthCost
from beexbench.results.codec import RecordError
from beexbench.results.quality import Calibration, SweepRow
from beexbench.results.schema import CellRecord
from beexbench.results.static_depth import StaticDepth
from beexbench.runner.measure import measure_accuracy_and_exits
from beexbench.runner.static_depth import (calibration_marks, exit_entropy_bits, mcnemar_p, measure_static_latency,
                                           with_latency)
from beexbench.training.batches import EncodedSplit
from beexbench.training.calibrate import choose
from test_report import make_record

SPEC = TaskSpec(task="synthetic-depth", num_labels=2, vocab_size=20, max_len=8)
TINY = {"encoder": {"d_model": 16, "n_heads": 2, "n_blocks": 2, "d_ff": 32}}
EASY, HARD, CLASS0, CLASS1 = 5, 6, 7, 8


def synthetic(n: int = 40) -> EncodedSplit:
    """Half easy (token 5 at position 1), half hard (token 6); the label is token 2 (7 -> 0, 8 -> 1)."""
    ids = torch.ones(n, SPEC.max_len, dtype=torch.long)
    ids[:, 1] = torch.where(torch.arange(n) % 2 == 0, EASY, HARD)
    ids[:, 2] = torch.where((torch.arange(n) // 2) % 2 == 0, CLASS0, CLASS1)
    mask = torch.ones(n, SPEC.max_len, dtype=torch.bool)
    mask[:, 6:] = False
    return EncodedSplit(ids, mask, (ids[:, 2] == CLASS1).long())


def oracle(first_exit_right_on_hard: bool, rule):
    """fp32's tiny network (for its cost profile and layout) answering with hand-set exit logits:
    exit 2 is right and confident for every sample; exit 1 is right and confident on easy samples
    and unsure on hard ones (right or wrong as asked)."""
    base = create_model("fp32", SPEC, TINY, seed=0)

    class Oracle(type(base)):
        name = "oracle"

        def forward(self, ids, mask):
            label = (ids[:, 2] == CLASS1).long()
            sure = torch.nn.functional.one_hot(label, 2).float() * 8.0
            unsure_class = label if first_exit_right_on_hard else 1 - label
            unsure = torch.nn.functional.one_hot(unsure_class, 2).float() * 0.2
            first = torch.where((ids[:, 1] == EASY)[:, None], sure, unsure)
            return [first, sure.clone()]

        def predict(self, ids, mask):
            return simulate(self.rule, torch.stack(self.forward(ids, mask)), [1, 2])

    model = Oracle(base.model_spec, SPEC)
    model.model.load_state_dict(base.model.state_dict())
    model.set_rule(rule)
    return model


@pytest.fixture(scope="module")
def depth():
    return DepthCost.measure(create_model("fp32", SPEC, TINY, seed=0))


def judged(model, depth):
    test = synthetic()
    quality = measure_accuracy_and_exits(model, test, depth, "classification")
    return quality, quality.static_depth


def test_a_rule_that_sends_only_the_hard_samples_on_is_adaptive(depth):
    quality, s = judged(oracle(False, AbsoluteEntropy(0.3, min_exit=1)), depth)
    assert quality.exits.histogram == (20, 20)
    assert [p.k for p in s.points] == [1, 2]
    assert [p.accuracy for p in s.points] == [0.5, 1.0] and s.rule_accuracy == 1.0
    m1, m2 = (p.mean_macs for p in s.points)
    assert s.rule_mean_macs == pytest.approx((m1 + m2) / 2)
    assert s.static_at_rule_cost == pytest.approx(0.75) and s.margin == pytest.approx(0.25)
    assert s.verdict == "adaptive" and s.verdict_text.startswith("adaptive")
    assert s.compared_k == 2 and s.discordant == (0, 0) and s.p_value is None  # as right as depth 2, cheaper
    assert s.cheaper_k == 1 and s.p_value_cheaper == pytest.approx(2 * 0.5**20)  # 20 hard samples, all one way
    assert s.modal_share == 0.5 and s.exit_entropy_bits == pytest.approx(1.0)
    assert "+25.0 points above the static curve" in s.verdict_text


def test_a_rule_that_stops_everyone_at_one_block_is_degenerate(depth):
    _, s = judged(oracle(False, AbsoluteEntropy(5.0, min_exit=1)), depth)
    assert s.verdict == "degenerate" and s.modal_block == 1 and s.modal_share == 1.0 and s.exit_entropy_bits == 0.0
    assert "equivalent to a 1-block model" in s.verdict_text
    assert s.compared_k == 1 and s.p_value is None  # the rule is static depth 1, sample for sample


def test_a_rule_whose_extra_depth_buys_nothing_is_no_better_than_static_depth(depth):
    _, s = judged(oracle(True, AbsoluteEntropy(0.3, min_exit=1)), depth)
    assert [p.accuracy for p in s.points] == [1.0, 1.0] and s.rule_accuracy == 1.0
    assert s.margin == pytest.approx(0.0) and s.verdict == "static"
    assert s.verdict_text.startswith("no better than static depth 1")


def test_the_paired_test_is_exact_mcnemar_by_hand():
    # b = 1, c = 5: two-sided exact binomial at 1/2 = 2 * (C(6,0) + C(6,1)) / 2^6 = 14 / 64
    assert mcnemar_p(1, 5) == pytest.approx(14 / 64)
    assert mcnemar_p(5, 1) == pytest.approx(14 / 64)
    assert mcnemar_p(3, 3) == pytest.approx(1.0)
    assert mcnemar_p(0, 0) is None  # nothing differs: no test, not a p of 1
    assert exit_entropy_bits([1, 1, 2]) == pytest.approx(1.5)


def test_each_calibration_objective_is_marked_on_the_test_sweep():
    def row(delta, acc, macs):
        return {"rule": "fractional-entropy", "delta": delta, "accuracy": acc, "mean_exit_block": 2.0,
                "exit_histogram": [0, 4], "mean_macs": macs}

    val = [row(0.1, 0.798, 100.0), row(0.3, 0.81, 150.0), row(0.5, 0.81, 200.0)]
    assert choose(val, 0.80, 0.005) == 0 and choose(val, 0.80, 0.005, objective="accuracy-seeking") == 1
    cal = Calibration.from_dict({"split": "val", "param": "delta", "metric": "accuracy", "reference_accuracy": 0.80,
                                 "tolerance": 0.005, "chosen": 0.1, "deployed_accuracy": 0.798, "sweep": val})
    test = tuple(SweepRow.from_dict(row(d, a, m)) for d, a, m in ((0.1, 0.70, 101.0), (0.3, 0.72, 152.0), (0.5, 0.73, 199.0)))
    marks = {m.objective: m for m in calibration_marks(cal, test)}
    assert (marks["cheapest-within-tolerance"].value, marks["cheapest-within-tolerance"].accuracy) == (0.1, 0.70)
    assert marks["cheapest-within-tolerance"].deployed and not marks["accuracy-seeking"].deployed
    assert (marks["accuracy-seeking"].value, marks["accuracy-seeking"].mean_macs) == (0.3, 152.0)


def test_the_section_round_trips_and_an_older_record_still_reads(depth, tmp_path):
    _, s = judged(oracle(False, AbsoluteEntropy(0.3, min_exit=1)), depth)
    s = with_latency(s, ())
    assert StaticDepth.from_dict(s.to_dict()) == s
    record = make_record("fp32")
    old = record.to_dict()
    assert "static_depth" not in old["metrics"]
    assert CellRecord.from_dict(old).metrics.section("static_depth") is None  # written before the section: reads
    record.metrics = type(record.metrics)(**{**record.metrics.__dict__, "extra": {"static_depth": s}})
    doc = record.to_dict()
    again = CellRecord.from_dict(doc)
    assert again.metrics.section("static_depth") == s and again.to_dict() == doc
    assert set(doc["metrics"]["static_depth"]["points"][0]) >= {"k", "accuracy", "accuracy_lo", "accuracy_hi", "mean_macs",
                                                                "latency_ms", "latency_note"}
    doc["metrics"]["static_depth"]["verdict"] = "maybe"
    with pytest.raises(RecordError, match="static_depth/verdict"):
        CellRecord.from_dict(doc)


def test_static_latency_runs_each_depth_in_the_models_runtime_and_restores_its_rule():
    model = create_model("fp32", SPEC, TINY, seed=0)
    deployed = model.exit_rule()
    test = synthetic(8)
    singles = [(test.input_ids[i:i + 1], test.attention_mask[i:i + 1]) for i in range(4)]
    settings = LatencySettings(warmup=1, min_iters=2, min_seconds=0.0, max_seconds=1.0, isolate=False)
    out = measure_static_latency(model, singles, "cpu", settings, lambda fn, inputs, **b: measure_latency(
        fn, target="cpu", inputs=inputs, batch_size=1, **b))
    assert [s.k for s in out] == [1, 2] and all(s.median_ms is not None and s.median_ms > 0 for s in out)
    assert all("reduced budget" in s.note for s in out)
    assert model.exit_rule() is deployed


def test_a_runtime_that_cannot_deploy_the_static_rule_records_why():
    class Bare:  # an EarlyExit plugin without set_rule
        name = "bare"

        def exit_layout(self):
            return ExitLayout(exit_blocks=(1, 2), n_blocks=2)

        def exit_rule(self):
            return FractionalEntropy(0.1)

        def rule_variants(self, param, values):
            return []

        def predict(self, ids, mask):
            raise AssertionError("never timed")

    out = measure_static_latency(Bare(), [(None, None)], "cpu", LatencySettings(), lambda *a, **k: None)
    assert [s.median_ms for s in out] == [None, None]
    assert all(s.note.startswith("unavailable:") and "set_rule" in s.note for s in out)


def test_the_packed_engine_runs_the_static_rule_in_its_one_native_call():
    kind, a, _, k, lower = _fused._rule_args(Static(3))
    assert (kind, k, lower) == (2, 3, False) and a == torch.finfo(torch.float32).max and not math.isinf(a)
    if _native.ops() is None:
        pytest.skip("the native engine is not available here")
    from beexbench.adapters.registry import get_adapter_class

    float_model = create_model("beexformer", TaskSpec("p", 2, 30, 8), {"encoder": {"d_model": 32, "n_heads": 2,
                                                                                     "n_blocks": 3, "d_ff": 32}}, seed=0)
    packed = get_adapter_class("beexformer-packed").derive(float_model, None)
    ids = torch.randint(1, 30, (6, 8))
    mask = torch.ones(6, 8, dtype=torch.bool)
    every = torch.stack(packed.model(ids, mask))
    for block in (1, 2, 3):
        packed.rule = Static(block)
        assert packed.implementation().engine == "native"  # the whole-model op, as the deployed rule runs
        d = packed.predict(ids, mask)
        assert d.exit_block.tolist() == [block] * 6
        assert torch.equal(d.logits, every[block - 1])
