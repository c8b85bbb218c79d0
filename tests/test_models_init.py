"""The shared encoder's initialisation (beexbench/models/init.py), checked on every model
built on it: embedding tables, fp32 and latent binary Linear weights, biases, LayerNorms."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from beexbench.adapters.base import TaskSpec
from beexbench.adapters.encoder_adapter import EncoderAdapter
from beexbench.adapters.registry import create_model, get_adapter_class, list_models
from beexbench.models.encoder import BinaryEmbedding
from beexbench.models.init import INIT_STD
from beexbench.models.layers import QuantLinear

SPEC = TaskSpec(task="init", num_labels=3, vocab_size=2000, max_len=64)
SIZE = {"encoder": {"d_model": 64, "n_heads": 4, "n_blocks": 2, "d_ff": 128}}
TRAINED_ON_THE_ENCODER = [n for n in list_models()
                          if issubclass(get_adapter_class(n), EncoderAdapter) and not get_adapter_class(n).derived_from]


def build(name: str, **encoder) -> nn.Module:
    torch.manual_seed(0)
    return create_model(name, SPEC, {"encoder": {**SIZE["encoder"], **encoder}}).module()


@pytest.mark.parametrize("name", TRAINED_ON_THE_ENCODER)
def test_embedding_tables_start_small(name):
    """torch's nn.Embedding default is N(0, 1): this is the test that fails on it."""
    model = build(name)
    tok, pos = model.tok.weight.detach(), model.pos.weight.detach()
    for rows in (tok[1:], pos):
        assert abs(float(rows.std()) - INIT_STD) < 0.1 * INIT_STD
        assert abs(float(rows.mean())) < 0.1 * INIT_STD
    assert torch.count_nonzero(tok[0]) == 0  # the padding row


@pytest.mark.parametrize("name", TRAINED_ON_THE_ENCODER)
def test_every_linear_latent_or_fp32_is_truncated_normal(name):
    model = build(name)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert linears and any(isinstance(m, QuantLinear) for m in linears)
    for lin in linears:
        w = lin.weight.detach()
        assert float(w.abs().max()) <= 2 * INIT_STD + 1e-7  # truncated at 2 std
        if w.numel() >= 1024:  # enough draws for the std (N(0, s) truncated at 2s has std 0.88 s)
            assert abs(float(w.std()) - 0.88 * INIT_STD) < 0.12 * INIT_STD
        if lin.bias is not None and getattr(lin, "weight_bits", 32) == 32:
            assert torch.count_nonzero(lin.bias) == 0
        elif lin.bias is not None:  # binarized: random, so +-1 sums that are exactly 0 are not ties
            assert torch.count_nonzero(lin.bias) == lin.bias.numel() and float(lin.bias.abs().max()) < 6 * INIT_STD
    for norm in (m for m in model.modules() if isinstance(m, nn.LayerNorm)):
        assert torch.all(norm.weight == 1) and torch.all(norm.bias == 0)


def test_binarized_layers_keep_their_own_starting_points():
    """Shifts start at -center (-0.5 before the sigmoid-fed SLFN projection), BiT's scales at
    their set values: the initialisation touches weights, not these."""
    model = build("beexformer")
    w2 = model.blocks[0].ffn.w2
    assert torch.all(w2.input_quantizer.shift == -0.5)
    assert torch.all(model.blocks[0].ffn.w1.input_quantizer.shift == 0)
    bit = build("bit-style")
    assert all(float(m.act_scale) == 1.0 for m in bit.modules() if isinstance(m, QuantLinear))
    assert all(torch.all(m.prob_scale == 0.5) for m in bit.modules() if getattr(m, "prob_scale", None) is not None)


def test_binary_embedding_scale_follows_the_table():
    """A5's binary table alpha_row * sign(E): alpha ~ mean|N(0, std)| = std * sqrt(2/pi)."""
    model = build("beexformer", binary_embedding=True)
    assert isinstance(model.tok, BinaryEmbedding)
    alpha = model.tok.weight[1:].abs().mean(1)
    assert abs(float(alpha.mean()) - INIT_STD * (2 / torch.pi) ** 0.5) < 0.1 * INIT_STD


def test_initialisation_depends_on_the_seed_only():
    a, b = build("fp32"), build("fp32")
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
