"""fp32-ort and int8-ort: the trained fp32 model exported to ONNX block by block and run by ONNX
Runtime with the exit rule between session calls. fp32-ort gives the torch model's predictions
and exit blocks (batch 1 and batched with row removal) with logits within 1e-4 for every rule;
its files are what the size profiler reads; its checkpoint round-trips and refuses tampered
graphs; its sessions follow torch's thread count and the OpenMP wait policy; int8-ort's graphs
really run integer MatMuls and its agreement with fp32 is recorded."""
from __future__ import annotations

import json
import os

import pytest
import torch

from beexbench.adapters.base import TaskSpec
from beexbench.adapters.registry import create_model, get_adapter_class, load_model
from beexbench.adapters.roles import deployment_of
from beexbench.errors import BeexError
from beexbench.models.exits import AbsoluteEntropy, ExitRule, FractionalEntropy, Patience
from beexbench.profilers.ops import count_ops
from beexbench.profilers.size import measure_size
from beexbench.training.batches import EncodedSplit
from nudged import nudged

from baselines.ort import HEADER, graph_file

SPEC = TaskSpec(task="ort", num_labels=3, vocab_size=60, max_len=24)
SMALL = {"encoder": {"d_model": 32, "n_heads": 4, "n_blocks": 3, "d_ff": 48}, "train": {"epochs": 1, "batch_size": 16}}
RULES = [FractionalEntropy(0.1), FractionalEntropy(0.5), FractionalEntropy(-0.05, answer="current"),
         FractionalEntropy(1.01, min_exit=3), Patience(1), AbsoluteEntropy(1.05), ExitRule()]
TOL = 1e-4


pytestmark = pytest.mark.usefixtures("one_thread")


def data(n: int, seed: int) -> EncodedSplit:
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, SPEC.max_len + 1, (n,), generator=g)
    mask = torch.arange(SPEC.max_len)[None, :] < lengths[:, None]
    ids = torch.randint(1, SPEC.vocab_size, (n, SPEC.max_len), generator=g) * mask
    return EncodedSplit(ids, mask, ids[:, 0] % SPEC.num_labels)


def trained_fp32(steps: int = 15):
    """Random init plus a few AdamW steps, so exits differ in confidence."""
    split = data(64, seed=1)
    return nudged("fp32", SPEC, SMALL, split.input_ids, split.attention_mask, split.labels, steps)


@pytest.fixture(scope="module")
def models():
    fp32 = trained_fp32()
    val = data(48, seed=2)
    ort = get_adapter_class("fp32-ort").derive(fp32, val)
    int8 = get_adapter_class("int8-ort").derive(fp32, val)
    return fp32, ort, int8


def test_declared_as_deployments_of_fp32():
    for name in ("fp32-ort", "int8-ort"):
        cls = get_adapter_class(name)
        assert cls.derived_from == "fp32" and cls.role == deployment_of("fp32") and cls.devices == ("cpu",)
        assert cls.default_spec() == get_adapter_class("fp32").default_spec()


def test_the_record_says_onnx_runtime_ran(models):
    """metrics.implementation of an ORT deployment names ONNX Runtime, its version and the provider
    its sessions report, never 'pytorch'; the fp32 model it deploys says pytorch."""
    import onnxruntime

    from beexbench.results.implementation import implementation_of

    fp32, ort, int8 = models
    for model in (ort, int8):
        impl = implementation_of(model)
        assert impl.engine == "onnxruntime" and not impl.fallback
        assert impl.fast_path.startswith(f"onnxruntime {onnxruntime.__version__} (CPUExecutionProvider)")
    assert implementation_of(fp32).engine == "pytorch"


@pytest.mark.parametrize("rule", RULES, ids=lambda r: json.dumps(r.to_dict()))
def test_fp32_ort_is_the_torch_model(models, rule):
    fp32, ort, _ = models
    fp32.set_rule(rule)
    ort.set_rule(rule)
    split = data(40, seed=3)
    ids, mask = split.input_ids, split.attention_mask
    for i in range(12):  # batch 1, each sample at its own length
        n = int(mask[i].sum())
        x = (ids[i : i + 1, :n], mask[i : i + 1, :n])
        a, b = fp32.predict(*x), ort.predict(*x)
        assert torch.equal(a.exit_block, b.exit_block), f"sample {i}: exit {a.exit_block} vs {b.exit_block}"
        assert torch.equal(a.logits.argmax(-1), b.logits.argmax(-1))
        assert float((a.logits - b.logits).abs().max()) <= TOL
    a, b = fp32.predict(ids, mask), ort.predict(ids, mask)  # batched, rows removed as they exit
    assert torch.equal(a.exit_block, b.exit_block) and torch.equal(a.logits.argmax(-1), b.logits.argmax(-1))
    assert float((a.logits - b.logits).abs().max()) <= TOL
    with torch.no_grad():  # every exit, every block run
        for x, y in zip(fp32.forward(ids, mask), ort.forward(ids, mask)):
            assert float((x - y).abs().max()) <= TOL


def test_exits_really_vary(models):
    fp32, ort, _ = models
    ort.set_rule(FractionalEntropy(0.1))
    blocks = ort.predict(data(40, seed=3).input_ids, data(40, seed=3).attention_mask).exit_block
    assert len(set(blocks.tolist())) > 1, "every sample exits at one block: the batched test removes no rows"


def test_derive_records_its_verification(models):
    _, ort, int8 = models
    v = ort.verification
    assert v["split"] == "val" and v["samples"] == 48 and v["prediction_agreement"] == 1.0
    assert v["exit_block_agreement"] == 1.0 and v["max_abs_logit_diff"] <= TOL and v["tolerance"] == TOL
    w = int8.verification
    assert w["tolerance"] is None and 0.0 <= w["prediction_agreement"] <= 1.0 and 0.0 <= w["exit_block_agreement"] <= 1.0
    assert w["max_abs_logit_diff_all_exits"] > 0.0
    assert any("verified on val" in n for n in ort.precision().notes + int8.precision().notes)


def test_a_disagreeing_export_is_refused(models):
    fp32, _, _ = models
    cls = get_adapter_class("fp32-ort")
    val = data(16, seed=5)

    def off_by_a_little(ids, mask):
        d = fp32.predict(ids, mask)
        return type(d)(d.logits + 1e-3, d.exit_block)

    out = cls.derive(fp32, None)
    assert out.verification["split"] is None
    with pytest.raises(BeexError, match="tolerance"):
        out.verify(off_by_a_little, fp32.forward, val)


def test_sizes_are_the_onnx_files(models, tmp_path):
    fp32, ort, int8 = models
    for adapter in (ort, int8):
        folder = tmp_path / adapter.name
        adapter.save(folder)
        files = adapter.deployable_files(folder)
        assert [f.name for f in files] == [graph_file(i) for i in (1, 2, 3)] + [HEADER]
        rec = measure_size(adapter, files)
        assert rec.disk_bytes == sum(os.path.getsize(f) for f in files)
    fp32_rec = measure_size(ort)
    assert fp32_rec.bits["int8"] == 0 and fp32_rec.total_bits == measure_size(fp32).total_bits
    int8_rec = measure_size(int8)
    assert int8_rec.bits["int8"] > 0 and int8_rec.total_bits < fp32_rec.total_bits
    # the fp32 graphs hold every parameter at 4 bytes (plus the graph structure)
    onnx_bytes = sum(os.path.getsize(tmp_path / "fp32-ort" / graph_file(i)) for i in (1, 2, 3))
    assert fp32_rec.total_bytes <= onnx_bytes < fp32_rec.total_bytes * 1.5 + 64_000
    int8_bytes = sum(os.path.getsize(tmp_path / "int8-ort" / graph_file(i)) for i in (1, 2, 3))
    assert int8_bytes < onnx_bytes


def test_round_trip_gives_identical_outputs(models, tmp_path):
    _, ort, int8 = models
    split = data(16, seed=6)
    for adapter in (ort, int8):
        adapter.set_rule(FractionalEntropy(0.1))
        adapter.save(tmp_path / adapter.name)
        loaded = load_model(tmp_path / adapter.name)
        assert type(loaded).name == adapter.name and loaded.verification == json.loads(json.dumps(adapter.verification))
        assert loaded.graphs() == adapter.graphs()
        a, b = adapter.predict(split.input_ids, split.attention_mask), loaded.predict(split.input_ids, split.attention_mask)
        assert torch.equal(a.logits, b.logits) and torch.equal(a.exit_block, b.exit_block)


@pytest.mark.parametrize("damage", ["flip", "foreign", "missing"])
def test_tampered_graph_is_refused(models, tmp_path, damage):
    _, ort, int8 = models
    ort.save(tmp_path)
    target = tmp_path / graph_file(2)
    if damage == "flip":
        blob = bytearray(target.read_bytes())
        blob[len(blob) // 2] ^= 0xFF
        target.write_bytes(bytes(blob))
    elif damage == "foreign":
        target.write_bytes(int8.graphs()[1])
    else:
        target.unlink()
    with pytest.raises(BeexError, match="re-derive") as err:
        load_model(tmp_path)
    assert "\n" not in str(err.value) and graph_file(2) in str(err.value)


def test_sessions_follow_threads_and_wait_policy(models, monkeypatch):
    _, ort, _ = models
    x = data(2, seed=7)
    try:
        monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")
        ort.predict(x.input_ids, x.attention_mask)
        s = ort.session_settings()
        assert s["intra_op_num_threads"] == 1 and s["inter_op_num_threads"] == 1 and s["allow_spinning"] is False
        first = ort.sessions()[0]
        torch.set_num_threads(2)
        monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
        ort.predict(x.input_ids, x.attention_mask)
        s = ort.session_settings()
        assert s["intra_op_num_threads"] == 2 and s["allow_spinning"] is True
        assert ort.sessions()[0] is not first
        assert ort.sessions()[0].get_session_options().intra_op_num_threads == 2
    finally:
        torch.set_num_threads(1)


def test_graphs_follow_the_module(models):
    """module() is the network the graphs run: change its weights and the graphs are re-exported."""
    fp32, _, _ = models
    ort = get_adapter_class("fp32-ort").derive(fp32, None)
    x = data(4, seed=8)
    with torch.no_grad():  # no autograd: the ORT graphs run
        before = ort.forward(x.input_ids, x.attention_mask)[-1]
        first = ort.graphs()
        ort.module().heads[-1].out.bias.add_(1.0)
        after = ort.forward(x.input_ids, x.attention_mask)[-1]
    assert ort.graphs() is not first
    torch.testing.assert_close(after, before + 1.0, rtol=0, atol=1e-4)


def test_int8_graphs_run_integer_matmuls(models):
    import onnx

    _, _, int8 = models
    linears = {f"blocks.{b}.{p}" for b in range(3) for p in ("attn.q", "attn.k", "attn.v", "attn.o")}
    quantized = {w.module for w in int8.quantized_weights()}
    # ORT's default op types: every Linear (the heads' Gemm too) and the embedding tables
    assert linears | {"heads.0.out", "tok", "pos"} <= quantized
    for graph in int8.graphs():
        model = onnx.load_from_string(graph)
        ops = {n.op_type for n in model.graph.node}
        assert {"MatMulInteger", "DynamicQuantizeLinear"} <= ops
        int8_inits = [i for i in model.graph.initializer if i.data_type == onnx.TensorProto.INT8]
        assert len(int8_inits) >= 4
    prec = int8.precision()
    for name in quantized:  # what the graphs store is what precision() declares
        assert prec.params[f"{name}.weight"] == 8
        assert prec.products.get(name) == (None if name in ("tok", "pos") else (8, 8))
    rec = count_ops(int8, 8)
    assert rec.uncounted == {} and rec.macs.get("int8", 0) > 0
    assert count_ops(models[1], 8).total_macs == count_ops(models[0], 8).total_macs


def test_int8_ort_tracks_fp32(models):
    fp32, _, int8 = models
    split = data(32, seed=9)
    with torch.no_grad():
        a = fp32.forward(split.input_ids, split.attention_mask)[-1]
        b = int8.forward(split.input_ids, split.attention_mask)[-1]
    assert not torch.equal(a, b) and float((a - b).abs().max()) < 0.1 * max(1.0, float(a.abs().max()))


def test_a_network_with_one_exit_head():
    """exit_heads = False: blocks without a head pass h on; only the last graph answers."""
    torch.manual_seed(1)
    fp32 = create_model("fp32-no-ee", SPEC, {**SMALL, "encoder": {**SMALL["encoder"], "exit_heads": False}})
    ort = get_adapter_class("fp32-ort").derive(fp32, data(16, seed=10))
    assert [io.outputs for io in ort._ios] == [("h",), ("h",), ("logits",)]
    x = data(8, seed=11)
    a, b = fp32.predict(x.input_ids, x.attention_mask), ort.predict(x.input_ids, x.attention_mask)
    assert torch.equal(a.exit_block, b.exit_block) and b.exit_block.tolist() == [3] * 8
    assert float((a.logits - b.logits).abs().max()) <= TOL
