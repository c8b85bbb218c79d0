"""Contract tests, generated from the model registry: every registered model (built in,
from an entry point, or plugged in by a third party) gets them for free."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from beexbench.adapters.base import ModelAdapter, Precision, TaskSpec
from beexbench.adapters.checkpoint import WEIGHTS
from beexbench.adapters.protocols import has_early_exit
from beexbench.adapters.registry import get_adapter_class, list_models, load_model
from beexbench.errors import BeexError
from beexbench.models.encoder import BinaryEmbedding
from beexbench.profilers.ops import count_ops
from beexbench.training.batches import EncodedSplit
from conftest import create_with_inputs, runnable

MODELS = runnable(list_models())


pytestmark = pytest.mark.usefixtures("one_thread")
SPEC = TaskSpec(task="contract", num_labels=3, vocab_size=50, max_len=16)
TINY = {"encoder": {"d_model": 16, "n_heads": 2, "n_blocks": 3, "d_ff": 32}, "train": {"epochs": 1, "batch_size": 16}}


def build(name: str) -> ModelAdapter:
    torch.manual_seed(0)
    overrides = TINY if get_adapter_class(name).uses_model_spec else {}  # declared: its settings are a ModelSpec
    return create_with_inputs(name, SPEC, overrides)


def is_post_training_quantized(adapter: ModelAdapter) -> bool:
    """Adapters whose fit converts a trained fp32 network (int8-dynamic, weight-only)."""
    return getattr(adapter, "float_model", None) is not None


def split(n: int, seed: int) -> EncodedSplit:
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(4, SPEC.max_len + 1, (n,), generator=g)
    mask = torch.arange(SPEC.max_len)[None, :] < lengths[:, None]
    ids = torch.randint(1, SPEC.vocab_size, (n, SPEC.max_len), generator=g) * mask
    return EncodedSplit(ids, mask, torch.randint(0, SPEC.num_labels, (n,), generator=g))


BATCH = split(8, seed=1)


def n_blocks(adapter: ModelAdapter) -> int:
    """Blocks of an encoder model; a model without blocks (the reference floors) has one exit."""
    blocks = getattr(adapter.module(), "blocks", None)
    return 1 if blocks is None else len(blocks)


def mean_exit_loss(adapter: ModelAdapter, batch: EncodedSplit) -> torch.Tensor:
    logits = adapter.forward(batch.input_ids, batch.attention_mask)
    return torch.stack([nn.functional.cross_entropy(lg, batch.labels) for lg in logits]).mean()


@pytest.mark.parametrize("name", MODELS)
def test_training_steps_lower_the_loss(name):
    """A few AdamW steps on one fixed batch lower the loss (binarized networks are piecewise
    constant in their latent weights, so a single step may land on a sign flip)."""
    adapter = build(name)
    if is_post_training_quantized(adapter):
        pytest.skip("fit is post-training quantization: see test_quantized_model_tracks_its_fp32_network")
    if not adapter.fit_by_gradient:
        pytest.skip("fit is closed-form (scikit-learn), not gradient steps: see tests/test_floors.py")
    module = adapter.module()
    params = [p for p in module.parameters() if p.requires_grad]
    assert params, f"{name} has no trainable parameters"
    opt = torch.optim.AdamW(params, lr=3e-3, weight_decay=0.0)
    module.eval()  # no dropout: the loss on the fixed batch is deterministic
    with torch.no_grad():
        before = mean_exit_loss(adapter, BATCH)
    for _ in range(3):
        opt.zero_grad()
        mean_exit_loss(adapter, BATCH).backward()
        opt.step()
    with torch.no_grad():
        after = mean_exit_loss(adapter, BATCH)
    assert after < before, f"{name}: loss {before.item():.4f} -> {after.item():.4f} after 3 steps"


@pytest.mark.parametrize("name", MODELS)
def test_fit_on_a_tiny_split_reports(name):
    adapter = build(name)
    report = adapter.fit(split(48, seed=2), split(24, seed=3))
    assert (report.epochs >= 1 if adapter.fit_by_gradient else report.epochs == 0) and 0.0 <= report.val_accuracy <= 1.0
    if report.calibration is not None:
        assert report.calibration["split"] == "val"
    decision = adapter.predict(BATCH.input_ids, BATCH.attention_mask)
    assert decision.logits.shape == (len(BATCH), SPEC.num_labels)


@pytest.mark.parametrize("name", MODELS)
def test_forward_and_predict_shapes(name):
    adapter = build(name)
    outs = adapter.forward(BATCH.input_ids, BATCH.attention_mask)
    expected_exits = n_blocks(adapter) if has_early_exit(adapter) else None
    assert len(outs) >= 1 and (expected_exits is None or len(outs) == expected_exits)
    for logits in outs:
        assert logits.shape == (len(BATCH), SPEC.num_labels)
    d = adapter.predict(BATCH.input_ids, BATCH.attention_mask)
    assert d.logits.shape == (len(BATCH), SPEC.num_labels)
    assert d.exit_block.shape == (len(BATCH),)
    assert int(d.exit_block.min()) >= 1 and int(d.exit_block.max()) <= n_blocks(adapter)
    assert torch.isfinite(d.logits).all()


@pytest.mark.parametrize("name", MODELS)
def test_predict_answers_with_one_of_the_exits(name):
    """Early-exit inference (rows leave the batch) gives the logits of an exit that the
    full forward computed, one sample at a time (no padding, so batches cannot interact)."""
    adapter = build(name)
    for i in range(3):
        length = int(BATCH.attention_mask[i].sum())
        ids, mask = BATCH.input_ids[i : i + 1, :length], BATCH.attention_mask[i : i + 1, :length]
        with torch.no_grad():
            exits = adapter.forward(ids, mask)
        d = adapter.predict(ids, mask)
        assert any(torch.allclose(d.logits, lg, atol=1e-5) for lg in exits), f"{name}: predict matches no exit"
        if not has_early_exit(adapter):
            assert d.exit_block.tolist() == [n_blocks(adapter)]


@pytest.mark.parametrize("name", MODELS)
def test_checkpoint_round_trip_is_exact(name, tmp_path):
    adapter = build(name)
    adapter.save(tmp_path)
    loaded = load_model(tmp_path)
    assert type(loaded).name == name
    with torch.no_grad():
        a = adapter.forward(BATCH.input_ids, BATCH.attention_mask)
        b = loaded.forward(BATCH.input_ids, BATCH.attention_mask)
    assert len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b))
    da = adapter.predict(BATCH.input_ids, BATCH.attention_mask)
    db = loaded.predict(BATCH.input_ids, BATCH.attention_mask)
    assert torch.equal(da.logits, db.logits) and torch.equal(da.exit_block, db.exit_block)
    files = adapter.deployable_files(tmp_path)
    assert files and all(f.is_file() for f in files)


def check_precision(adapter: ModelAdapter, prec: Precision) -> None:
    module = adapter.module()
    mods = dict(module.named_modules())
    state = module.state_dict()
    missing = [n for n, _ in module.named_parameters() if n not in prec.params]
    assert not missing, f"parameters without a declared precision: {missing[:5]}"
    for pname, bits in prec.params.items():
        owner_name, _, leaf = pname.rpartition(".")
        assert bits in (1, 4, 8, 32) or (bits == 16 and leaf == "scale"), f"{pname}: {bits} bits"  # fp16 row scales
        owner = mods.get(owner_name)
        assert owner is not None, f"{pname} names no module"
        if bits == 1:
            # a binarized weight: on a QuantLinear / packed layer declaring weight_bits=1, or a binary embedding
            assert leaf == "weight" and (
                getattr(owner, "weight_bits", 0) == 1 or isinstance(owner, BinaryEmbedding)
            ), f"{pname}: 1 bit on something that is not a binarized weight"
        elif bits in (4, 8) and isinstance(owner, nn.Embedding):  # a table stored as 4/8-bit rows: looked up, no product
            assert leaf == "weight", f"{pname}: {bits} bits on an embedding but not on its table"
        elif bits in (4, 8):
            assert leaf == "weight" and owner_name in prec.products, f"{pname}: {bits} bits but no quantized product"
            assert bits in prec.products[owner_name], f"{pname}: product {prec.products[owner_name]} does not use its {bits}-bit weight"
        else:  # a parameter or buffer, or a stored tensor attribute (a packed embedding's per-row scale)
            assert pname in state or any(pname == n for n, _ in module.named_parameters()) or \
                isinstance(getattr(owner, leaf, None), torch.Tensor), f"{pname} is not in the state dict"
    for mname, mod in mods.items():
        if isinstance(mod, nn.Linear) or type(mod).__name__ in ("Linear", "DynamicQuantizedLinear", "WeightOnlyLinear"):
            assert mname in prec.products, f"Linear {mname} has no declared product precision"
    for mname, bits in prec.products.items():
        assert mname in mods, f"product {mname} names no module"
        assert len(bits) == 2 and all(b in (1, 4, 8, 16, 32) for b in bits)  # 16: bf16 products


@pytest.mark.parametrize("name", MODELS)
def test_precision_declaration_matches_the_parameters(name):
    adapter = build(name)
    check_precision(adapter, adapter.precision())


@pytest.mark.parametrize("name", MODELS)
def test_operation_counter_sees_every_op(name):
    adapter = build(name)
    rec = count_ops(adapter, 8)
    assert rec.uncounted == {}, f"{name}: {rec.uncounted} ({rec.notes})"
    # every model runs products, except one that declares none (majority: a constant answer)
    assert (rec.total_macs > 0) == bool(adapter.precision().products)


@pytest.mark.parametrize("name", MODELS)
def test_foreign_checkpoint_is_refused(name, tmp_path):
    other = next(n for n in list_models() if n != name)
    build(other).save(tmp_path)
    with pytest.raises(BeexError) as err:
        get_adapter_class(name).load(tmp_path)
    assert f"'{other}'" in str(err.value) and f"'{name}'" in str(err.value)


@pytest.mark.parametrize("name", MODELS)
def test_tampered_weights_are_refused(name, tmp_path):
    build(name).save(tmp_path)
    weights = tmp_path / WEIGHTS
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(BeexError, match="tampered"):
        load_model(tmp_path)


# -- post-training quantized baselines ----------------------------------------------------
QUANTIZED = [n for n in list_models() if not get_adapter_class(n).unavailable() and is_post_training_quantized(build(n))]


@pytest.mark.parametrize("name", QUANTIZED)
def test_quantized_model_tracks_its_fp32_network(name):
    adapter = build(name)
    with torch.no_grad():
        q = adapter.forward(BATCH.input_ids, BATCH.attention_mask)
        f = adapter.float_model.eval()(BATCH.input_ids, BATCH.attention_mask)
    for a, b in zip(q, f):
        assert not torch.equal(a, b), "quantized outputs are bit-identical to fp32: nothing was quantized"
        assert (a - b).abs().max() < 0.1 * max(1.0, float(b.abs().max()))


def test_int8_dynamic_is_verifiably_quantized():
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

    adapter = build("int8-dynamic")
    module = adapter.module()
    dynamic = {n: m for n, m in module.named_modules() if isinstance(m, DynamicLinear)}
    assert not [n for n, m in module.named_modules() if isinstance(m, nn.Linear)], "a float Linear is left"
    expected = {f"blocks.{b}.attn.{p}" for b in range(3) for p in "qkvo"} | {f"heads.{i}.out" for i in range(3)}
    assert expected <= set(dynamic)
    for m in dynamic.values():
        assert m.weight().dtype == torch.qint8
    assert torch.backends.quantized.engine in ("fbgemm", "qnnpack", "x86", "onednn")
    rec = count_ops(adapter, 8)  # every int8 product is counted as int8 x int8 MACs
    tokens = lambda n: 1 if n.startswith("heads") else 8  # noqa: E731 (heads see the pooled vector)
    assert rec.macs["int8"] == sum(m.in_features * m.out_features * tokens(n) for n, m in dynamic.items())
    assert rec.uncounted == {}


def test_int8_checkpoint_stores_int8_weights(tmp_path):
    from safetensors.torch import load_file

    adapter = build("int8-dynamic")
    adapter.save(tmp_path)
    tensors = load_file(str(tmp_path / WEIGHTS))
    assert tensors["blocks.0.attn.q.weight"].dtype == torch.int8
    assert tensors["blocks.0.ffn.w1.weight"].dtype == torch.int8
    fp32 = build("fp32")
    fp32.save(tmp_path / "fp32")
    assert (tmp_path / WEIGHTS).stat().st_size < (tmp_path / "fp32" / WEIGHTS).stat().st_size


def test_int8_dynamic_from_a_trained_fp32_model():
    fp32 = build("fp32")
    int8 = get_adapter_class("int8-dynamic").from_float(fp32)
    with torch.no_grad():
        a = int8.forward(BATCH.input_ids, BATCH.attention_mask)[-1]
        b = fp32.forward(BATCH.input_ids, BATCH.attention_mask)[-1]
    assert (a - b).abs().max() < 0.1


def test_loaded_quantized_model_refuses_to_train(tmp_path):
    adapter = build("int8-dynamic")
    adapter.save(tmp_path)
    with pytest.raises(BeexError, match="no fp32 weights"):
        load_model(tmp_path).fit(split(16, 4), split(8, 5))
