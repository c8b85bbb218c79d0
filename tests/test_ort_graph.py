"""fp32-ort-graph / int8-ort-graph (baselines/ort_graph.py): the whole early-exit network, its exit
rule inside, as one ONNX graph run with one session.run per predict."""
from __future__ import annotations

import pytest
import torch

from baselines import _onnx_graph as og
from baselines.ort_graph import GRAPH
from beexbench.adapters.base import TaskSpec
from beexbench.adapters.registry import create_model, get_adapter_class, load_model
from beexbench.errors import BeexError
from beexbench.training.batches import EncodedSplit

pytestmark = pytest.mark.usefixtures("one_thread")
FP32OrtGraph, Int8OrtGraph = get_adapter_class("fp32-ort-graph"), get_adapter_class("int8-ort-graph")  # named by the registry
SPEC = TaskSpec(task="graph", num_labels=3, vocab_size=40, max_len=12)
TINY = {"encoder": {"d_model": 16, "n_heads": 2, "n_blocks": 4, "d_ff": 32}, "train": {"epochs": 6, "batch_size": 16}}


def split(n: int, seed: int, learnable: bool = False) -> EncodedSplit:
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(3, SPEC.max_len + 1, (n,), generator=g)
    mask = torch.arange(SPEC.max_len)[None, :] < lengths[:, None]
    ids = torch.randint(4, SPEC.vocab_size, (n, SPEC.max_len), generator=g)
    labels = torch.randint(0, SPEC.num_labels, (n,), generator=g)
    if learnable:  # the label's token (1..3) is the first token
        ids[:, 0] = labels + 1
    return EncodedSplit(ids * mask, mask, labels)


def fp32(seed=0):
    torch.manual_seed(seed)
    return create_model("fp32", SPEC, TINY)


@pytest.fixture(scope="module")
def trained():
    src = fp32()
    src.fit(split(192, 1, learnable=True), split(64, 2, learnable=True))
    return src


def compare(dep, src, batch: EncodedSplit):
    """Row by row (batch 1, the measured case) and as one padded batch: exits identical, logits close."""
    ref = src.model.infer(batch.input_ids, batch.attention_mask, dep.rule)
    got = dep.predict(batch.input_ids, batch.attention_mask)
    assert torch.equal(got.exit_block, ref.exit_block)
    assert (got.logits - ref.logits).abs().max() < 1e-4
    for i in range(len(batch)):
        n = int(batch.attention_mask[i].sum())
        ids, mask = batch.input_ids[i:i + 1, :n], batch.attention_mask[i:i + 1, :n]
        one, r = dep.predict(ids, mask), src.model.infer(ids, mask, dep.rule)
        assert torch.equal(one.exit_block, r.exit_block) and (one.logits - r.logits).abs().max() < 1e-4
    return ref.exit_block


def test_the_graph_holds_the_rule_and_equals_torch_on_a_random_model():
    src = fp32()
    dep = FP32OrtGraph.derive(src, split(32, 3))
    assert dep.source is src and dep.verification["exit_block_agreement"] == 1.0
    assert og.op_types(dep.graph()).get("If", 0) == 2  # blocks 3 and 4 run under If (min_exit 2)
    batch = split(48, 4)
    # a random network's entropies barely move: deltas around the median reduction spread the exits
    full = src.model(batch.input_ids, batch.attention_mask)
    from beexbench.models.exits import entropy
    h = torch.stack([entropy(x) for x in full]).detach()
    r = ((h[:-1] - h[1:]) / h[:-1]).flatten()
    seen = set()
    for delta in (float(r.quantile(0.3)), float(r.median()), 0.0, 1.0):
        dep.set_rule(src.rule_variants("delta", [delta])[0])
        seen |= set(compare(dep, src, batch).tolist())
    assert {2, 3, 4} <= seen  # exits at every block past min_exit were checked, not only block 2
    exits = dep.forward(batch.input_ids, batch.attention_mask)  # every exit: delta = -inf fed to the graph
    with torch.no_grad():
        for a, b in zip(exits, src.model(batch.input_ids, batch.attention_mask)):
            assert (a - b).abs().max() < 1e-4
    assert len(exits) == 4


def test_one_session_run_per_predict(trained):
    dep = FP32OrtGraph.derive(trained, split(32, 5, learnable=True))
    session = dep.session()
    calls = []

    class Counting:
        def run(self, *a, **k):
            calls.append(1)
            return session.run(*a, **k)

        def __getattr__(self, name):
            return getattr(session, name)

    dep._session = Counting()
    batch = split(8, 6, learnable=True)
    dep.predict(batch.input_ids[:1], batch.attention_mask[:1])
    dep.predict(batch.input_ids, batch.attention_mask)
    assert len(calls) == 2
    assert dep.implementation().engine == "onnxruntime" and "one session call" in dep.implementation().fast_path


def test_trained_model_graph_equals_torch_and_round_trips(trained, tmp_path):
    dep = FP32OrtGraph.derive(trained, split(64, 7, learnable=True))
    assert dep.rule.to_dict() == trained.rule.to_dict()  # fp32's calibrated rule (delta, min_exit)
    assert dep.verification["max_abs_logit_diff"] < 1e-4 and dep.verification["prediction_agreement"] == 1.0
    batch = split(32, 8, learnable=True)
    compare(dep, trained, batch)
    dep.save(tmp_path)
    loaded = load_model(tmp_path)
    assert type(loaded) is get_adapter_class("fp32-ort-graph")
    a, b = dep.predict(batch.input_ids, batch.attention_mask), loaded.predict(batch.input_ids, batch.attention_mask)
    assert torch.equal(a.logits, b.logits) and torch.equal(a.exit_block, b.exit_block)
    data = bytearray((tmp_path / GRAPH).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (tmp_path / GRAPH).write_bytes(bytes(data))
    with pytest.raises(BeexError, match="tampered"):
        load_model(tmp_path)


def test_int8_graph_is_quantized_and_close_in_accuracy(trained):
    val, test = split(64, 9, learnable=True), split(128, 10, learnable=True)
    q = Int8OrtGraph.derive(trained, val)
    ops = og.op_types(q.graph())
    assert ops.get("MatMulInteger", 0) >= 4 * 8 and ops.get("DynamicQuantizeLinear", 0) > 0 and ops.get("If", 0) == 2
    f = FP32OrtGraph.derive(trained, val)
    acc = lambda d: float((d.predict(test.input_ids, test.attention_mask).logits.argmax(-1) == test.labels).float().mean())
    assert acc(f) > 0.6  # the trained model learned the task
    assert abs(acc(q) - acc(f)) <= 0.05
    out = q.predict(test.input_ids, test.attention_mask).logits
    assert not torch.equal(out, f.predict(test.input_ids, test.attention_mask).logits)  # something was quantized


def test_refusals_are_one_line_errors():
    binary = create_model("beexformer", SPEC, TINY)
    with pytest.raises(BeexError, match="full-precision"):
        FP32OrtGraph.derive(binary, None)
    src = fp32()
    from beexbench.models.exits import Patience
    with pytest.raises(BeexError, match="cannot be put inside one ONNX graph"):
        FP32OrtGraph.derive(src, None).set_rule(Patience(2))


@pytest.mark.parametrize("k", [1, 3])
def test_the_static_rule_runs_inside_the_graph_at_depth_k(k):
    """The static-depth reference (exit rule 'static', runner.static_depth) is timed in the one-call
    graph itself: every row leaves at block k, with torch's logits of exit k."""
    from beexbench.models.exits import Static

    src = fp32()
    dep = FP32OrtGraph.derive(src, split(32, 3))
    dep.set_rule(Static(k))
    blocks = compare(dep, src, split(24, 5))
    assert blocks.tolist() == [k] * 24
