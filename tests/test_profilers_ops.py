"""Operation counter: hand-computed formulas, an independent counter (torch.utils.flop_counter),
the precision split, nothing uncounted for any built-in model, and DepthCost."""
from __future__ import annotations

import json
import warnings
from functools import lru_cache

import pytest

from beexbench.results.implementation import PYTORCH, implementation_of
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from beexbench.adapters.base import ExitLayout, TaskSpec
from beexbench.engine.packed import PackedEncoder
from beexbench.adapters.encoder_adapter import module_precision
from beexbench.adapters.registry import create_model, get_adapter_class, list_models
from beexbench.errors import BeexError
from beexbench.profilers.ops import CONVENTION, DepthCost, OpsRecord, count_ops, register_op_handle
from conftest import runnable

D, H, DFF, C, V, MAXLEN = 16, 2, 24, 3, 100, 16
SPEC = TaskSpec("t", C, V, MAXLEN)
SMALL = {"encoder": {"n_blocks": 2, "d_model": D, "n_heads": H, "d_ff": DFF, "dropout": 0.0}}


@lru_cache(maxsize=None)
def model(name: str, n_blocks: int = 2, **encoder):
    cls = get_adapter_class(name)
    if not cls.uses_model_spec:  # settings of its own (the floors): its defaults
        return create_model(name, SPEC)
    enc = {**SMALL["encoder"], "n_blocks": n_blocks, **encoder}
    return create_model(name, SPEC, {"encoder": enc})


@lru_cache(maxsize=None)
def ops(name: str, seq_len: int = 8, n_blocks: int = 2) -> OpsRecord:
    return count_ops(model(name, n_blocks), seq_len)


def torch_flops(adapter, seq_len: int) -> int:
    ids = torch.arange(1, seq_len + 1).unsqueeze(0)
    mask = torch.ones(1, seq_len, dtype=torch.bool)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        adapter.forward(ids, mask)
    return counter.get_total_flops()


class ToyAdapter:
    """The smallest thing count_ops accepts: name, spec, module(), forward(), precision() and the
    declarations the counter reads, here ModelAdapter's defaults (exit_layout(): one block, one
    exit; op_handles(): none)."""

    name = "toy"

    def __init__(self, module: nn.Module, spec: TaskSpec = SPEC) -> None:
        self.model, self.spec = module, spec

    def module(self) -> nn.Module:
        return self.model

    def forward(self, ids, mask):
        return self.model(ids, mask)

    def precision(self):
        return module_precision(self.model)

    def exit_layout(self) -> ExitLayout:
        return ExitLayout()

    def op_handles(self) -> dict:
        return {}


# -- (1) hand-computed formula -----------------------------------------------------------
@pytest.mark.parametrize("L", [5, 8])
def test_fp32_block_and_head_match_formula(L):
    rec = ops("fp32", L)
    block = 4 * L * D * D + 4 * L * D * DFF + 2 * L * L * D  # Q,K,V,O + SLFN + QK^T, A.V
    assert rec.by_module["block.1"]["macs_fp32"] == block
    assert rec.by_module["block.2"]["macs_fp32"] == block
    assert rec.by_module["head.1"]["macs_fp32"] == D * C
    assert rec.by_module["embed"]["macs_fp32"] == 0
    assert rec.products["blocks.0.attn.qk"]["macs"] == L * L * D
    assert rec.products["blocks.0.attn.av"]["macs"] == L * L * D
    assert rec.macs["fp32"] == 2 * (block + D * C)
    assert rec.bops == 0 and rec.flops == 2 * rec.macs["fp32"] + rec.elementwise_flops
    # exit head elementwise: h*m, sum over tokens, m.sum, clamp, divide, LayerNorm (5/elt), bias
    assert rec.by_module["head.1"]["elementwise_flops"] == L * D + L * D + L + 1 + D + 5 * D + C


def test_embedding_is_recorded_at_zero_cost():
    rec = ops("fp32")
    assert rec.op_calls["embedding"] == 2  # token + position tables
    assert rec.by_module["embed"]["macs_fp32"] == 0


# -- (2) independent counter --------------------------------------------------------------
# torch's counter has no formula for these kernels (it counts them as 0)
TORCH_UNCOUNTED = ("quantized::linear_dynamic", "aten::_weight_int8pack_mm", "aten::_weight_int4pack_mm_for_cpu")


@pytest.mark.parametrize("name", runnable(list_models()))
def test_product_flops_equal_torch_flop_counter(name):
    """FlopCounterMode counts 2 per MAC of mm/bmm/addmm/sdpa (it ignores bias adds,
    elementwise ops and precision), so it must equal 2 x our MACs summed over every
    bucket, exactly - except the MACs of quantized kernels ``TORCH_UNCOUNTED``, which
    it does not see (ours: the int8 and weight-only buckets)."""
    L = 8
    rec = ops(name, L)
    if implementation_of(model(name)).engine not in (PYTORCH, "native", "steps", "python"):
        # runs in another runtime (ONNX Runtime, OpenVINO), which the torch counter cannot see: counted from fp32's network
        assert rec.total_macs == ops("fp32", L).total_macs
        return
    # weight-only kernels (w8a32, w4a32: TORCH_UNCOUNTED) are invisible to it; bf16 products (w16a16) are counted
    invisible = sum(v for b, v in rec.macs.items() if b == "int8" or (b.startswith("w") and b.endswith("a32") and b != "w1a32"))
    packed = isinstance(model(name).module(), PackedEncoder)
    if packed:  # its binary products run in beexbench's popcount kernels
        invisible += rec.macs["binary"]
    assert 2 * (rec.total_macs - invisible) == torch_flops(model(name), L)
    if name == "fp32" or (name.startswith("beexformer") and not packed):
        assert invisible == 0


# -- (3) precision split ----------------------------------------------------------------------
def test_beexformer_bops_equal_fp32_macs_of_binarized_products():
    b, f = ops("beexformer"), ops("fp32")
    binary = [n for n, p in b.products.items() if p["bucket"] == "binary"]
    assert any(n.endswith("attn.qk") for n in binary) and any(n.endswith("ffn.w1") for n in binary)
    assert b.bops == b.macs["binary"] == sum(f.products[n]["macs"] for n in binary)
    assert b.macs["fp32"] == sum(p["macs"] for n, p in f.products.items() if n not in binary)
    assert b.total_macs == f.total_macs
    assert b.ops == b.flops + b.bops / 64
    assert b.flops == 2 * b.macs["fp32"] + b.elementwise_flops


def test_w1a32_products_are_flops_reported_apart():
    w, f = ops("beexformer-w1a32"), ops("fp32")
    assert w.bops == 0
    linears = [n for n, p in w.products.items() if p["bucket"] == "w1a32"]
    assert linears and all(".attn.q" in n or ".ffn." in n or ".attn." in n for n in linears)
    assert w.macs["w1a32"] == sum(f.products[n]["macs"] for n in linears)
    assert w.flops == 2 * (w.macs["fp32"] + w.macs["w1a32"]) + w.elementwise_flops


def test_parameter_only_work_is_folded_not_counted():
    """A binarized token embedding is binarized once at inference (cached, as a deployment
    stores it), so the counted FLOPs do not change and nothing needs folding."""
    plain = ops("beexformer")
    binemb = count_ops(model("beexformer", 2, binary_embedding=True), 8)
    assert ops("fp32").folded_flops == 0
    assert binemb.folded_flops == 0
    assert binemb.elementwise_flops == plain.elementwise_flops and binemb.macs == plain.macs


# -- (4) nothing uncounted ----------------------------------------------------------------
@pytest.mark.parametrize("name", runnable(list_models()))
def test_nothing_uncounted_for_builtin_models(name):
    rec = ops(name, 8)
    assert rec.uncounted == {}, rec.uncounted
    assert rec.notes == ()  # every MAC sits in a module that declares its precision
    # every model runs products, except one that declares none (majority: a constant answer)
    assert (rec.total_macs > 0) == bool(model(name).precision().products) and rec.convention == CONVENTION
    json.dumps(rec.to_dict())


class _SignToy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(V, 4)
        self.out = nn.Linear(4, C)

    def forward(self, ids, mask):
        from beexbench.models.quantizers import binary_sign, sign_g

        h = self.emb(ids)
        return [self.out((binary_sign(h) + sign_g(h)).mean(1))]


def test_sign_costs_one_flop_per_element_on_either_path():
    """Inference sign is where(x >= 0, 1, -1) (ge + a free select), the training path an
    autograd Function (prim::PythonOp): both 1 FLOP per element."""
    L = 5
    rec = count_ops(ToyAdapter(_SignToy()), L)
    assert rec.uncounted == {}
    assert rec.op_calls["PythonOp._SignG"] == 1 and rec.op_calls["ge"] == 1 and rec.op_calls["where"] == 1
    signs, add, mean, bias = 2 * L * 4, L * 4, L * 4, C
    assert rec.elementwise_flops == signs + add + mean + bias


class _Cube(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x * x * x


class _ToyCustom(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(V, 4)
        self.out = nn.Linear(4, C)

    def forward(self, ids, mask):
        return [self.out(_Cube.apply(self.emb(ids)).mean(1))]


def test_unknown_op_is_recorded_then_countable_after_registering():
    rec = count_ops(ToyAdapter(_ToyCustom()), 5)
    assert rec.uncounted == {"prim::PythonOp._Cube": 1}
    register_op_handle("prim::PythonOp._Cube", lambda i, o: {"flop": 2 * o[0].type().sizes()[-1] * 5})
    try:
        rec = count_ops(ToyAdapter(_ToyCustom()), 5)
        assert rec.uncounted == {} and rec.op_calls["PythonOp._Cube"] == 1
    finally:
        register_op_handle("prim::PythonOp._Cube", None)


def test_int8_dynamic_linear_counts_as_int8():
    class Toy(_ToyCustom):
        def forward(self, ids, mask):
            return [self.out(torch.relu(self.emb(ids)).mean(1))]

    toy = Toy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's deprecation notice for eager quantization
        q = torch.ao.quantization.quantize_dynamic(toy, {nn.Linear}, dtype=torch.qint8)
    rec = count_ops(ToyAdapter(q), 5)
    assert rec.uncounted == {}
    assert rec.macs["int8"] == 4 * C and rec.macs["fp32"] == 0
    assert rec.flops == 2 * 4 * C + rec.elementwise_flops
    assert isinstance(q.out, torch.ao.nn.quantized.dynamic.Linear)  # restored after tracing


# -- (5) DepthCost -------------------------------------------------------------------------
@lru_cache(maxsize=None)
def depth(name: str = "beexformer", n_blocks: int = 6) -> DepthCost:
    return DepthCost.measure(model(name, n_blocks))


@pytest.mark.parametrize("L", [7, 16])
def test_depth_cost_final_exit_equals_count_ops(L):
    dc = depth()
    full = count_ops(model("beexformer", 6), L)
    assert dc.macs(torch.tensor([6]), torch.tensor([L])).item() == full.total_macs
    assert dc.macs(torch.tensor([6]), torch.tensor([L]), bucket="binary").item() == full.bops
    rec = dc.record(6, L)
    assert rec.macs == full.macs and rec.flops == full.flops and rec.by_module == full.by_module


def test_depth_cost_partial_exit_and_ordering():
    dc = depth()
    L = 9
    costs = dc.macs(torch.arange(1, 7), torch.full((6,), L))
    assert torch.all(costs[1:] > costs[:-1])
    assert costs[1] < costs[5]
    rec2 = dc.record(2, L)
    assert set(rec2.by_module) == {"embed", "block.1", "block.2", "head.1", "head.2"}
    assert rec2.total_macs == costs[1].item()
    full = count_ops(model("beexformer", 6), L)
    expected = sum(full.by_module[g][f"macs_{b}"] for g in rec2.by_module for b in ("fp32", "binary"))
    assert rec2.total_macs == expected
    json.dumps(dc.to_dict())


def test_depth_cost_rejects_blocks_without_heads():
    adapter = model("fp32", 2, exit_heads=False)
    dc = DepthCost.measure(adapter)
    assert dc.exits == [2]
    assert dc.macs(torch.tensor([2]), torch.tensor([8])).item() == count_ops(adapter, 8).total_macs
    with pytest.raises(BeexError, match="no exit after block"):
        dc.macs(torch.tensor([1]), torch.tensor([8]))


class _Cubic(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(V, 4)
        self.out = nn.Linear(4, C)

    def forward(self, ids, mask):
        h = self.emb(ids)  # [1, L, 4]
        s = h @ h.transpose(1, 2)  # L^2
        s = s @ s  # L^3: not a polynomial of degree 2
        return [self.out((s @ h).mean(1))]


def test_depth_cost_verifies_the_polynomial():
    with pytest.raises(BeexError, match="not a polynomial"):
        DepthCost.measure(ToyAdapter(_Cubic()))


class _Stack(nn.Module):
    """Two blocks under a name of its own (``layers``), a head after each: nothing the counter
    could guess from attribute names."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(V, 4)
        self.layers = nn.ModuleList(nn.Linear(4, 4) for _ in range(2))
        self.outs = nn.ModuleList(nn.Linear(4, C) for _ in range(2))

    def forward(self, ids, mask):
        h, out = self.emb(ids), []
        for layer, head in zip(self.layers, self.outs):
            h = layer(h)
            out.append(head(h.mean(1)))
        return out


class _DeclaredStack(ToyAdapter):
    def exit_layout(self) -> ExitLayout:
        m = self.model
        return ExitLayout(2, (1, 2), tuple(m.layers), tuple(m.outs))


def test_groups_and_exits_come_from_the_declared_exit_layout():
    L = 5
    rec = count_ops(_DeclaredStack(_Stack()), L)
    assert {g: rec.by_module[g]["macs_fp32"] for g in ("block.1", "block.2", "head.1", "head.2")} == {
        "block.1": L * 16, "block.2": L * 16, "head.1": 4 * C, "head.2": 4 * C}
    dc = DepthCost.measure(_DeclaredStack(_Stack()))
    assert (dc.exits, dc.n_blocks) == ([1, 2], 2)
    assert dc.macs(torch.tensor([1, 2]), torch.tensor([L, L])).tolist() == [L * 16 + 4 * C, rec.total_macs]
    # the same module under the default declaration (one block, one exit): grouped per child
    plain = count_ops(ToyAdapter(_Stack()), L)
    assert "block.1" not in plain.by_module and plain.total_macs == rec.total_macs
    assert DepthCost.measure(ToyAdapter(_Stack())).exits == [1]
    # an encoder's own blocks are not read from the module when the adapter declares none
    enc = model("fp32", 2)
    assert "block.1" not in count_ops(ToyAdapter(enc.module()), 8).by_module


def test_a_declared_layout_must_name_the_modules_it_runs():
    class Foreign(ToyAdapter):
        def exit_layout(self) -> ExitLayout:
            return ExitLayout(2, (1, 2), tuple(_Stack().layers), tuple(self.model.outs))

    class Short(ToyAdapter):
        def exit_layout(self) -> ExitLayout:
            return ExitLayout(2, (1, 2), (self.model.layers[0],), tuple(self.model.outs))

    with pytest.raises(BeexError, match="block 1 module in exit_layout"):
        count_ops(Foreign(_Stack()), 5)
    with pytest.raises(BeexError, match="1 block and 2 head modules for 2 blocks"):
        DepthCost.measure(Short(_Stack()))
