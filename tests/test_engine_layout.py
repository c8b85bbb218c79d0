"""Issue 30, the binary engine toward its limit: the whole-model engine's register-blocked popcount
tile and its GELU pass that packs the next layer's bits itself (engine/_engine.cpp), and the kernels'
weight layout built once per layer (kernels ``binary_layout``, kept by ``PackedBinaryLinear``)
give the same results, bit for bit, as the paths they replace."""
from __future__ import annotations

import pytest
import torch

from beexbench import kernels
from beexbench.engine import _native, pack_encoder
from beexbench.kernels._checks import KernelInputError
from beexbench.kernels.packed_linear import PackedBinaryLinear
from beexbench.kernels.products import binary_layout
from beexbench.models.encoder import EarlyExitEncoder, EncoderConfig
from beexbench.models.exits import ExitRule
from engine_variants import each_isa_and_thread_count

SHAPES = [(1, 1, 1), (3, 65, 17), (24, 384, 384), (5, 130, 200), (4, 512, 2000), (70, 256, 96)]


def native_backends() -> list[str]:
    kernels.backend()  # initialise the kernels
    if not kernels._State.native_ready:
        return []
    return [b for b in kernels.available_backends() if b != "torch-fallback"]


@pytest.fixture
def backend_restored():
    threads = torch.get_num_threads()
    yield
    kernels.set_backend("auto")
    torch.set_num_threads(threads)


@pytest.mark.skipif(not native_backends(), reason="no native kernels here")
def test_a_cached_layout_gives_the_products_of_the_per_call_layout(backend_restored):
    """Every native backend, 1 and 2 threads (the 4 x 2000 product splits its columns over the
    threads, so each reads its slice of the one layout): the same floats with and without it."""
    g = torch.Generator().manual_seed(3)
    cases = []
    for m, k, n in SHAPES:
        x = torch.randn(m, k, generator=g)
        w = kernels.pack_rows(torch.randn(n, k, generator=g))
        cases.append((x, w, torch.rand(n, generator=g), torch.randn(n, generator=g), k))
    used = 0
    for backend in native_backends():
        kernels.set_backend(backend)
        for threads in (1, 2):
            torch.set_num_threads(threads)
            for x, w, alpha, bias, k in cases:
                laid = binary_layout(w, k)
                used += laid is not None
                ref = kernels.binary_linear(x, w, alpha, bias, k)
                assert torch.equal(kernels.binary_linear(x, w, alpha, bias, k, layout=laid), ref)
                assert torch.equal(kernels.binary_linear(x, w, alpha, None, k, layout=laid),
                                   kernels.binary_linear(x, w, alpha, None, k))
                torch.testing.assert_close(ref, kernels._fallback.binary_linear(x, w, alpha, bias, k),
                                           atol=1e-4, rtol=1e-5)
    if "avx512-vpopcnt" in native_backends():
        assert used == 2 * len(SHAPES)  # the panel backend builds one; the others have none to cache
    else:
        assert used == 0


@pytest.mark.skipif(not native_backends(), reason="no native kernels here")
def test_the_layer_rebuilds_its_layout_when_its_weights_change():
    """In place (copy_, load_state_dict) or replaced: the next call uses the new weights' layout;
    the layout is never part of the state_dict (the artifact keeps the 1-bit rows only)."""
    g = torch.Generator().manual_seed(4)
    w1, w2, w3 = (torch.randn(100, 200, generator=g) for _ in range(3))
    x = torch.randn(6, 200, generator=g)
    layer = PackedBinaryLinear.from_float(w1)
    assert torch.equal(layer(x), PackedBinaryLinear.from_float(w1)(x))
    layer.weight_packed.copy_(kernels.pack_rows(w2))
    want2 = PackedBinaryLinear.from_float(w2, alpha=layer.alpha, bias=layer.bias)(x)
    assert not torch.equal(want2, PackedBinaryLinear.from_float(w1, alpha=layer.alpha, bias=layer.bias)(x))
    assert torch.equal(layer(x), want2)
    layer.load_state_dict(PackedBinaryLinear.from_float(w3).state_dict())
    assert torch.equal(layer(x), PackedBinaryLinear.from_float(w3)(x))
    assert set(layer.state_dict()) == {"weight_packed", "alpha"}


@pytest.mark.skipif(not native_backends(), reason="no native kernels here")
def test_a_layout_of_other_weights_is_refused():
    g = torch.Generator().manual_seed(5)
    w = kernels.pack_rows(torch.randn(40, 128, generator=g))
    other = torch.zeros(2, 2, 16, dtype=torch.int32)  # the layout of 32 rows of 64 bits, not 40 of 128
    with pytest.raises(KernelInputError, match="layout must be binary_layout"):
        kernels.binary_linear(torch.randn(3, 128), w, torch.ones(40), None, 128, layout=other)


GELU = {"d_model": 64, "n_heads": 4, "n_blocks": 3, "d_ff": 200, "ffn": "gelu"}


@pytest.mark.skipif(_native.ops() is None, reason="the fused engine is not available here")
def test_the_gelu_pass_packs_the_module_paths_bits_where_gelu_is_in_doubt():
    """The whole-model op's GELU pass writes the next layer's bits itself; where fgelu cannot
    settle a bit (GELU of x below about -5 with shift 0: -0 or a tiny negative) it takes ATen's, as
    the module path does. Pre-activations made large (the first FFN layer's weights x 40, so its
    alpha too) and the second layer's shift 0 in blocks 0 and 2: many such elements, and the
    logits still equal the module path's bit for bit, every instruction set, 1 and 2 threads;
    d_ff 200: a partial last word and 16-lane tail."""
    torch.manual_seed(0)
    cfg = EncoderConfig(**GELU)
    state = EarlyExitEncoder(cfg, vocab_size=60, max_len=32, num_labels=3).state_dict()
    for b in range(GELU["n_blocks"]):
        state[f"blocks.{b}.ffn.w1.weight"] *= 40.0
        key = f"blocks.{b}.ffn.w2.input_quantizer.shift"
        assert key in state
        state[key] = torch.zeros_like(state[key]) if b != 1 else torch.randn_like(state[key]) * 0.05
    model = pack_encoder(state, cfg.to_dict(), vocab_size=60, max_len=32, num_labels=3)
    g = torch.Generator().manual_seed(9)
    ids = torch.randint(1, 60, (3, 30), generator=g)
    mask = torch.ones(3, 30, dtype=torch.bool)
    mask[1, 20:] = False
    seen = []
    hook = model.blocks[0].ffn.w1.register_forward_hook(lambda mod, inp, out: seen.append(out.detach().clone()))
    rule = ExitRule()
    ref = model.infer_modules(ids, mask, rule)
    hook.remove()
    assert (torch.cat(seen) < -6).sum() > 100  # the doubtful region is really visited
    ops = _native.ops()
    for _isa, _threads in each_isa_and_thread_count(ops):
        with torch.no_grad():
            got = model.infer(ids, mask, rule)
        assert torch.equal(got.exit_block, ref.exit_block)
        assert torch.equal(got.logits, ref.logits), (got.logits - ref.logits).abs().max()
