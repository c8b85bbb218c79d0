"""beexformer-packed: the packed-bit engine returns the logits of the float BEExformer whose
token table is the engine's decoded rows (int8 rows by default: ``reference``), and so its
predictions and exit blocks, for every sample (batch 1 and batched with row removal), with the
native kernels, the fused C++ steps, the module path and the PyTorch fallback; its deployable
format round-trips, is smaller than the float checkpoint and refuses foreign or tampered files;
the counters see it as beexformer. The token embedding formats themselves (A5's lossless
1-bit rows, int4, fp32, sizes on disk): tests/test_packed_embeddings.py."""
from __future__ import annotations

import copy
import json
import os
import subprocess
import sys

import pytest
import torch

import beexbench.kernels as K
from beexbench.adapters.base import TaskSpec
from beexbench.adapters.checkpoint import META, WEIGHTS
from beexbench.adapters.registry import create_model, get_adapter_class, load_model
from beexbench.engine import PACKED_FILE, _native
from beexbench.engine.packed import PackedEncoder
from beexbench.errors import BeexError
from beexbench.models.exits import AbsoluteEntropy, ExitRule, FractionalEntropy, Patience
from beexbench.models.layers import QuantLinear
from beexbench.profilers.ops import count_ops
from beexbench.profilers.size import measure_size
from nudged import nudged

SPEC = TaskSpec(task="packed", num_labels=3, vocab_size=50, max_len=24)
ODD = {"encoder": {"d_model": 40, "n_heads": 4, "n_blocks": 3, "d_ff": 72}, "train": {"epochs": 1, "batch_size": 16}}
RULES = [FractionalEntropy(0.1), FractionalEntropy(0.5), FractionalEntropy(-0.05, answer="current"),
         FractionalEntropy(1.01, min_exit=3), Patience(1), AbsoluteEntropy(1.05), ExitRule()]


def data(n: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, SPEC.max_len + 1, (n,), generator=g)
    mask = torch.arange(SPEC.max_len)[None, :] < lengths[:, None]
    ids = torch.randint(1, SPEC.vocab_size, (n, SPEC.max_len), generator=g) * mask
    labels = (ids[:, 0] % SPEC.num_labels)
    return ids, mask, labels


def trained_beexformer(overrides=ODD, steps: int = 12):
    """Random init plus a few AdamW steps (signs, shifts and scales move off their init)."""
    return nudged("beexformer", SPEC, overrides, *data(64, seed=1), steps)


def reference(float_adapter, packed):
    """The float model the engine must equal: ``float_adapter`` with its token table replaced by
    the engine's decoded rows (the same model when the rows are lossless)."""
    ref = copy.deepcopy(float_adapter)
    with torch.no_grad():
        ref.module().tok.weight.copy_(packed.model.tok.table())
    return ref


@pytest.fixture(scope="module")
def trained():
    float_adapter = trained_beexformer()
    return float_adapter, get_adapter_class("beexformer-packed").derive(float_adapter, None)


@pytest.fixture(scope="module")
def pair(trained):
    """(the float model with the decoded token rows, the packed deployment)."""
    float_adapter, packed = trained
    return reference(float_adapter, packed), packed


def test_default_rows_are_int8_and_round_the_table(trained):
    float_adapter, packed = trained
    tok = packed.model.tok
    assert tok.bits == 8 and tok.codes.dtype == torch.int8 and tok.scale.shape == (SPEC.vocab_size,)
    table = float_adapter.module().tok.weight.detach()
    err = (tok.table() - table).abs()
    assert 0 < err.max() <= (tok.scale / 2 + 1e-7).max()  # rounded, within half a step per row
    assert "embedding_bits=8" in packed.precision().notes[-1]


def compare(float_adapter, packed, rule, ids, mask, batch1: bool) -> None:
    float_adapter.set_rule(rule)
    packed.rule = rule
    if batch1:
        for i in range(len(ids)):
            n = int(mask[i].sum())
            x = (ids[i : i + 1, :n], mask[i : i + 1, :n])
            a, b = float_adapter.predict(*x), packed.predict(*x)
            assert torch.equal(a.exit_block, b.exit_block), f"sample {i}: exit {a.exit_block} vs {b.exit_block}"
            assert torch.equal(a.logits.argmax(-1), b.logits.argmax(-1)), f"sample {i}"
            torch.testing.assert_close(b.logits, a.logits, rtol=1e-5, atol=1e-5)
    else:
        a, b = float_adapter.predict(ids, mask), packed.predict(ids, mask)
        assert torch.equal(a.exit_block, b.exit_block)
        assert torch.equal(a.logits.argmax(-1), b.logits.argmax(-1))
        torch.testing.assert_close(b.logits, a.logits, rtol=1e-5, atol=1e-5)


def test_engine_is_inference_only(pair):
    _, packed = pair
    module = packed.module()
    assert isinstance(module, PackedEncoder)
    assert not any(isinstance(m, QuantLinear) for m in module.modules())
    assert len(packed.model.packed_linears()) == 3 * 8


def test_forward_matches_every_exit(pair):
    float_adapter, packed = pair
    ids, mask, _ = data(40, seed=2)
    with torch.no_grad():
        a, b = float_adapter.forward(ids, mask), packed.forward(ids, mask)
    assert len(a) == len(b) == 3
    for x, y in zip(a, b):
        torch.testing.assert_close(y, x, rtol=1e-5, atol=1e-5)
        assert torch.equal(x.argmax(-1), y.argmax(-1))


@pytest.mark.parametrize("rule", RULES, ids=lambda r: json.dumps(r.to_dict()))
@pytest.mark.parametrize("batch1", [True, False], ids=["batch1", "batched"])
def test_predictions_and_exit_blocks_match(pair, rule, batch1):
    float_adapter, packed = pair
    ids, mask, _ = data(48, seed=3)
    compare(float_adapter, packed, rule, ids, mask, batch1)


def test_rules_exercise_row_removal(pair):
    float_adapter, _ = pair
    ids, mask, _ = data(48, seed=3)
    float_adapter.set_rule(FractionalEntropy(0.1))
    blocks = float_adapter.predict(ids, mask).exit_block
    assert len(set(blocks.tolist())) >= 2, "the test rule should make samples exit at different blocks"


def test_fused_path_runs_with_native_kernels(pair):
    if K.backend() == K.FALLBACK:
        pytest.skip("native kernels unavailable here")
    assert _native.ops() is not None, _native.mode()


@pytest.mark.parametrize("batch1", [True, False], ids=["batch1", "batched"])
def test_module_path_matches(pair, batch1):
    """The Python module path (what runs without the fused steps) gives the same answers."""
    float_adapter, packed = pair
    ids, mask, _ = data(24, seed=4)
    for rule in (FractionalEntropy(0.1), Patience(1)):
        float_adapter.set_rule(rule)
        if batch1:
            for i in range(len(ids)):
                n = int(mask[i].sum())
                a = float_adapter.predict(ids[i : i + 1, :n], mask[i : i + 1, :n])
                b = packed.model.infer_modules(ids[i : i + 1, :n], mask[i : i + 1, :n], rule)
                assert torch.equal(a.exit_block, b.exit_block)
                torch.testing.assert_close(b.logits, a.logits, rtol=1e-5, atol=1e-5)
        else:
            a = float_adapter.predict(ids, mask)
            b = packed.model.infer_modules(ids, mask, rule)
            assert torch.equal(a.exit_block, b.exit_block)
            torch.testing.assert_close(b.logits, a.logits, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("batch1", [True, False], ids=["batch1", "batched"])
def test_torch_fallback_backend_matches(pair, batch1):
    float_adapter, packed = pair
    ids, mask, _ = data(24, seed=5)
    prev = K.backend()
    K.set_backend("torch-fallback")
    try:
        assert _native.ops() is None  # the fused steps call native kernels: not with the fallback
        assert "torch-fallback" in packed.precision().notes[0]
        for rule in (FractionalEntropy(0.1), AbsoluteEntropy(1.05)):
            compare(float_adapter, packed, rule, ids, mask, batch1)
    finally:
        K.set_backend(prev)


FALLBACK_SCRIPT = r"""
import torch, sys
sys.path.insert(0, {tests!r})
import beexbench.kernels as K
from test_packed import trained_beexformer, data, reference, RULES
from beexbench.adapters.registry import get_adapter_class
assert K.backend() == "torch-fallback", K.backend()
f = trained_beexformer()
p = get_adapter_class("beexformer-packed").derive(f, None)
f = reference(f, p)
ids, mask, _ = data(32, seed=6)
same = 0
for rule in RULES:
    f.set_rule(rule); p.rule = rule
    a, b = f.predict(ids, mask), p.predict(ids, mask)
    ok = torch.equal(a.exit_block, b.exit_block) and torch.equal(a.logits.argmax(-1), b.logits.argmax(-1))
    ok = ok and torch.allclose(a.logits, b.logits, rtol=1e-5, atol=1e-5)
    same += int(ok)
print("SAME", same, len(RULES))
"""


def test_fallback_backend_in_a_subprocess():
    env = {**os.environ, "BEEXBENCH_KERNELS": "fallback"}
    script = FALLBACK_SCRIPT.format(tests=os.path.dirname(__file__))
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert f"SAME {len(RULES)} {len(RULES)}" in out.stdout, out.stdout + out.stderr[-2000:]


def test_checkpoint_round_trip_and_size(pair, tmp_path):
    float_adapter, packed = pair
    packed.rule = FractionalEntropy(0.1)
    packed.config = {**packed.config, "exit": {**packed.config["exit"], **FractionalEntropy(0.1).to_dict()}}
    packed.save(tmp_path / "packed")
    float_adapter.save(tmp_path / "float")
    loaded = load_model(tmp_path / "packed")
    assert type(loaded).name == "beexformer-packed"
    assert loaded.rule.to_dict() == packed.rule.to_dict()
    ids, mask, _ = data(32, seed=7)
    with torch.no_grad():
        for x, y in zip(packed.forward(ids, mask), loaded.forward(ids, mask)):
            assert torch.equal(x, y)
    a, b = packed.predict(ids, mask), loaded.predict(ids, mask)
    assert torch.equal(a.logits, b.logits) and torch.equal(a.exit_block, b.exit_block)
    files = loaded.deployable_files(tmp_path / "packed")
    assert {f.name for f in files} == {PACKED_FILE, WEIGHTS, META}
    packed_bytes = sum(f.stat().st_size for f in files)
    float_bytes = sum(f.stat().st_size for f in float_adapter.deployable_files(tmp_path / "float"))
    assert packed_bytes < float_bytes
    # the binarized layers alone: 1 bit per weight (+ fp32 alpha, bias, shift) vs 32 bits
    float_linear_bytes = sum(m.weight.numel() * 4 for m in float_adapter.module().modules() if isinstance(m, QuantLinear))
    assert (tmp_path / "packed" / PACKED_FILE).stat().st_size < float_linear_bytes / 4
    size = measure_size(loaded, files)
    assert size.disk_bytes == packed_bytes
    ref = measure_size(float_adapter)
    # the same declared bits as beexformer, but the token table: int8 rows + an fp16 scale per row
    v, d = SPEC.vocab_size, 40
    assert size.bits["int8"] == 8 * v * d and size.bits["int8_scales"] == 16 * v
    assert ref.bits["fp32"] - size.bits["fp32"] == 32 * v * d
    assert {k: b for k, b in size.bits.items() if not k.startswith("int8") and k not in ("fp32", "embeddings")} == \
        {k: b for k, b in ref.bits.items() if not k.startswith("int8") and k not in ("fp32", "embeddings")}


def test_foreign_and_tampered_files_are_refused(pair, tmp_path):
    float_adapter, packed = pair
    float_adapter.save(tmp_path / "float")
    with pytest.raises(BeexError, match="'beexformer'"):
        get_adapter_class("beexformer-packed").load(tmp_path / "float")
    packed.save(tmp_path / "p")
    data_ = bytearray((tmp_path / "p" / PACKED_FILE).read_bytes())
    data_[-1] ^= 0xFF
    (tmp_path / "p" / PACKED_FILE).write_bytes(bytes(data_))
    with pytest.raises(BeexError, match="tampered"):
        load_model(tmp_path / "p")
    packed.save(tmp_path / "q")
    doc = json.loads((tmp_path / "q" / META).read_text())
    doc["packed"]["format"] = "something-else"
    (tmp_path / "q" / META).write_text(json.dumps(doc))
    with pytest.raises(BeexError, match="packed-format header"):
        load_model(tmp_path / "q")
    packed.save(tmp_path / "r")  # the tensors' shapes follow from the architecture in the header
    doc = json.loads((tmp_path / "r" / META).read_text())
    doc["packed"]["architecture"]["encoder"]["d_ff"] = 80
    doc["config"]["encoder"]["d_ff"] = 80
    (tmp_path / "r" / META).write_text(json.dumps(doc))
    with pytest.raises(BeexError, match="do not match the architecture in its header.*re-derive"):
        load_model(tmp_path / "r")
    packed.save(tmp_path / "v1")  # a file of the format before the compact embedding
    doc = json.loads((tmp_path / "v1" / META).read_text())
    assert doc["packed"]["version"] == 2 and doc["packed"]["embedding"]["bits"] == 8
    doc["packed"]["version"] = 1
    (tmp_path / "v1" / META).write_text(json.dumps(doc))
    with pytest.raises(BeexError, match="format version 1, this beexbench reads 2: re-derive it"):
        load_model(tmp_path / "v1")


def test_operation_counter_sees_beexformer_bops(pair):
    float_adapter, packed = pair
    a, b = count_ops(float_adapter, 16), count_ops(packed, 16)
    assert b.uncounted == {}, (b.uncounted, b.notes)
    assert b.bops == a.bops > 0
    assert b.macs == a.macs
    assert b.flops == a.flops + 16 * 40  # + dequantizing the int8 rows: one multiply per element
    assert {k: v["macs"] for k, v in b.products.items()} == {k: v["macs"] for k, v in a.products.items()}


def test_operation_counter_with_the_fallback_backend(pair):
    float_adapter, packed = pair
    prev = K.backend()
    K.set_backend("torch-fallback")
    try:
        rec = count_ops(packed, 24)
    finally:
        K.set_backend(prev)
    assert rec.uncounted == {} and rec.bops == count_ops(float_adapter, 24).bops


def test_precision_notes_name_the_backend(pair):
    _, packed = pair
    notes = packed.precision().notes
    assert notes and notes[0].startswith(f"packed kernels: {K.backend()}")


def test_derive_keeps_the_calibrated_rule():
    f = trained_beexformer(steps=2)
    f.set_rule(FractionalEntropy(0.3, min_exit=2))
    f.config = {**f.config, "exit": {**f.config["exit"], "delta": 0.3}}
    p = get_adapter_class("beexformer-packed").derive(f, None)
    assert p.rule.to_dict() == f.rule.to_dict()
    assert p.config["exit"]["delta"] == 0.3
    assert get_adapter_class("beexformer-packed").derived_from == "beexformer"
    assert get_adapter_class("beexformer-packed").devices == ("cpu",)


def test_unsupported_configuration_is_refused():
    torch.manual_seed(0)
    w1a32 = create_model("beexformer-w1a32", SPEC, ODD)
    with pytest.raises(BeexError, match="W1A1"):
        get_adapter_class("beexformer-packed").derive(w1a32, None)


def test_fused_frac_entropy_op_equals_the_python_rule_step():
    """The C++ ``frac_entropy`` (engine/_engine.cpp) is the documented twin of
    models.exits.fractional_entropy_step: same results, bit for bit, for every flag."""
    from beexbench.models.exits import fractional_entropy_step

    ops = _native.ops()
    if ops is None:
        pytest.skip(f"fused engine not running here: {_native.mode()}")
    g = torch.Generator().manual_seed(11)
    for trial in range(6):
        logits = torch.randn(17, 3, generator=g) * (0.3 + trial)
        prev_l = torch.randn(17, 3, generator=g)
        prev_h = torch.rand(17, generator=g) * 1.1
        prev_h[0] = 0.0  # the eps clamp
        for has in (False, True):
            for check in (False, True):
                for lower in (False, True):
                    for last in (False, True):
                        a = ops.frac_entropy(logits, prev_l, prev_h if has else logits, has, 0.1, 1e-6, check, lower,
                                             last)
                        b = fractional_entropy_step(logits, prev_l if has else None, prev_h if has else None, 0.1,
                                                    1e-6, check, lower, last)
                        for x, y in zip(a, b):
                            assert torch.equal(x, y), (trial, has, check, lower, last)
