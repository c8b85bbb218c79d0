"""ov-fp32 / ov-bf16 / ov-int8 (baselines/openvino.py) and fp32-bf16 (baselines/torch_bf16.py): the
trained fp32 network run at the host's best precision, checked against torch fp32."""
from __future__ import annotations

import sys

import pytest
import torch

from baselines import _openvino_rt as rt
from baselines.ort_graph import GRAPH
from beexbench.adapters.base import TaskSpec
from beexbench.adapters.registry import create_model, get_adapter_class, load_model
from beexbench.errors import BeexError
from beexbench.results.implementation import FastPathUnavailable
from beexbench.training.batches import EncodedSplit

pytestmark = pytest.mark.usefixtures("one_thread")
needs_ov = pytest.mark.skipif(rt.missing() is not None, reason=f"openvino is not installed: {rt.INSTALL}")
SPEC = TaskSpec(task="ovpeers", num_labels=3, vocab_size=40, max_len=12)
TINY = {"encoder": {"d_model": 16, "n_heads": 2, "n_blocks": 4, "d_ff": 32}, "train": {"epochs": 6, "batch_size": 16}}


def split(n: int, seed: int) -> EncodedSplit:
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(3, SPEC.max_len + 1, (n,), generator=g)
    mask = torch.arange(SPEC.max_len)[None, :] < lengths[:, None]
    ids = torch.randint(4, SPEC.vocab_size, (n, SPEC.max_len), generator=g)
    labels = torch.randint(0, SPEC.num_labels, (n,), generator=g)
    ids[:, 0] = labels + 1  # learnable: the label's token is the first token
    return EncodedSplit(ids * mask, mask, labels)


@pytest.fixture(scope="module")
def trained():
    torch.manual_seed(0)
    src = create_model("fp32", SPEC, TINY)
    src.fit(split(192, 1), split(64, 2))
    return src


def answers(model, batch: EncodedSplit):
    with torch.no_grad():
        return model.predict(batch.input_ids, batch.attention_mask)


def accuracy(decision, batch: EncodedSplit) -> float:
    return float((decision.logits.argmax(-1) == batch.labels).float().mean())


@needs_ov
def test_ov_fp32_equals_torch_with_one_infer_call_per_predict(trained):
    dep = get_adapter_class("ov-fp32").derive(trained, split(64, 3))
    assert dep.source is trained and dep.verification["max_abs_logit_diff"] < 1e-4
    assert dep.verification["prediction_agreement"] == 1.0 and dep.verification["exit_block_agreement"] == 1.0
    batch = split(32, 4)
    ref, got = trained.model.infer(batch.input_ids, batch.attention_mask, dep.rule), answers(dep, batch)
    assert torch.equal(got.exit_block, ref.exit_block) and (got.logits - ref.logits).abs().max() < 1e-4
    for i in range(6):  # batch 1, each row at its length (the measured case)
        n = int(batch.attention_mask[i].sum())
        ids, mask = batch.input_ids[i:i + 1, :n], batch.attention_mask[i:i + 1, :n]
        one, r = dep.predict(ids, mask), trained.model.infer(ids, mask, dep.rule)
        assert torch.equal(one.exit_block, r.exit_block) and (one.logits - r.logits).abs().max() < 1e-4
    request, calls = dep.request(), []

    class Counting:
        def infer(self, *a, **k):
            calls.append(1)
            return request.infer(*a, **k)

        def __getattr__(self, name):
            return getattr(request, name)

    dep._request = Counting()
    dep.predict(batch.input_ids[:1], batch.attention_mask[:1])
    dep.predict(batch.input_ids, batch.attention_mask)
    assert len(calls) == 2  # the exit rule runs inside the graph: one call per predict, whatever the exits
    impl = dep.implementation()
    assert impl.engine == "openvino" and "one infer call" in impl.fast_path and not impl.fallback


@needs_ov
@pytest.mark.parametrize("name", ["ov-bf16", "ov-int8", "fp32-bf16"])
def test_low_precision_peers_agree_with_fp32(trained, name):
    dep = get_adapter_class(name).derive(trained, split(64, 3))
    assert dep.verification["split"] == "val" and dep.verification["tolerance"] is None  # recorded only
    test = split(256, 5)
    ref, got = answers(trained, test), answers(dep, test)
    agree = float((ref.logits.argmax(-1) == got.logits.argmax(-1)).float().mean())
    assert agree >= 0.95 and abs(accuracy(got, test) - accuracy(ref, test)) <= 0.05
    assert accuracy(ref, test) > 0.6  # the fp32 model learned the task
    assert not torch.equal(got.logits, ref.logits)  # something ran at lower precision
    products = set(dep.precision().products.values())
    assert products & {(16, 16), (8, 8)}, products


@needs_ov
def test_ov_int8_is_nncf_quantized_and_calibration_is_labelled(trained):
    dep = get_adapter_class("ov-int8").derive(trained, split(64, 3))
    ops = __import__("baselines._onnx_graph", fromlist=["op_types"]).op_types(dep.graph())
    assert ops.get("DequantizeLinear", 0) > 0 and ops.get("If", 0) == 2  # QDQ inside the one graph
    prec = dep.precision()
    assert prec.params["blocks.0.attn.q.weight"] == 8 and prec.products["blocks.3.ffn.w1"] == (8, 8)
    assert "calibrated on the validation split" in dep.quantization_note()
    runtime = rt.runtime_precisions(dep.compiled())
    assert runtime.get("i8", 0) + runtime.get("u8", 0) > 0  # OpenVINO runs int8 kernels


@needs_ov
@pytest.mark.parametrize("name", ["ov-fp32", "ov-int8"])
def test_round_trip_without_pickle_and_tamper_refused(trained, name, tmp_path):
    dep = get_adapter_class(name).derive(trained, split(64, 3))
    batch = split(32, 6)
    dep.save(tmp_path)
    loaded = load_model(tmp_path)
    assert type(loaded).name == name and loaded.source is None
    a, b = answers(dep, batch), answers(loaded, batch)
    assert torch.equal(a.logits, b.logits) and torch.equal(a.exit_block, b.exit_block)
    assert loaded.quantization_note() == dep.quantization_note()  # the calibration label survives
    data = bytearray((tmp_path / GRAPH).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (tmp_path / GRAPH).write_bytes(bytes(data))
    with pytest.raises(BeexError, match="tampered"):
        load_model(tmp_path)


@needs_ov
def test_bf16_detection_and_label_on_a_cpu_without_native_bf16(trained, monkeypatch):
    from baselines import openvino as ovmod
    from baselines.torch_bf16 import native_bf16

    graph = get_adapter_class("ov-fp32").derive(trained, None).graph()
    assert not rt.ran_bf16(rt.compile_graph(graph, "f32", 1))  # an f32 compile never reads as bf16
    if native_bf16():  # this CPU has AVX512-BF16 or AMX: OpenVINO's bf16 hint runs bf16 products
        assert rt.ran_bf16(rt.compile_graph(graph, "bf16", 1))
    dep = get_adapter_class("ov-bf16").derive(trained, None)
    monkeypatch.setattr(ovmod.rt, "ran_bf16", lambda compiled: False)  # a CPU where OpenVINO settles on f32
    monkeypatch.delenv("BEEXBENCH_ALLOW_FALLBACK", raising=False)
    with pytest.raises(FastPathUnavailable, match="bf16 unavailable on this CPU: ran f32"):
        dep.implementation()
    monkeypatch.setenv("BEEXBENCH_ALLOW_FALLBACK", "1")
    impl = dep.implementation()
    assert impl.fallback and impl.reason == "bf16 unavailable on this CPU: ran f32" and impl.label.startswith("fallback")
    assert set(dep.precision().products.values()) == {(32, 32)}  # what ran, not what was asked for
    assert "ran f32" in dep.quantization_note()


def test_torch_bf16_label_without_native_bf16(trained, monkeypatch, tmp_path):
    from baselines import torch_bf16

    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_vnni\n")
    assert torch_bf16.native_bf16(info) is None
    info.write_text("processor\t: 0\nflags\t\t: fpu avx512f avx512_bf16\n")
    assert torch_bf16.native_bf16(info) == "avx512_bf16"
    dep = get_adapter_class("fp32-bf16").derive(trained, None)
    monkeypatch.setattr(torch_bf16, "native_bf16", lambda: None)
    monkeypatch.delenv("BEEXBENCH_ALLOW_FALLBACK", raising=False)
    with pytest.raises(FastPathUnavailable, match="bf16 unavailable on this CPU"):
        dep.implementation()


def test_missing_openvino_is_a_one_line_error_naming_the_extra(trained, monkeypatch):
    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino raises ImportError
    assert rt.INSTALL in rt.missing()
    cls = get_adapter_class("ov-fp32")
    assert cls.unavailable() and rt.INSTALL in cls.unavailable()
    with pytest.raises(BeexError, match=r"pip install 'beexbench\[openvino\]'") as err:
        cls.derive(trained, split(8, 3))
    assert "\n" not in str(err.value)
    built = create_model("ov-fp32", SPEC, TINY)  # still listed and built; only running it needs openvino
    with pytest.raises(BeexError, match="beexbench\\[openvino\\]"):
        built.predict(torch.ones(1, 4, dtype=torch.long), torch.ones(1, 4, dtype=torch.bool))


def test_a_run_naming_a_model_whose_extra_is_missing_is_refused_before_work(monkeypatch):
    from beexbench.config import load_config
    from beexbench.validate import validate

    with monkeypatch.context() as m:
        m.setitem(sys.modules, "openvino", None)  # import openvino raises ImportError
        problems = validate(load_config("smoke", models=["fp32", "ov-fp32", "ov-int8"]))
    assert problems == [f"openvino is not installed (openvino): {rt.INSTALL} (models ov-fp32, ov-int8)"]
    if rt.missing() is None:  # installed here: the same run is valid
        assert validate(load_config("smoke", models=["fp32", "ov-fp32"])) == []
