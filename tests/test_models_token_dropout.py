"""Token dropout (``encoder.token_dropout``): in training, each token's embedding is zeroed
with the given probability (its position embedding stays); at inference it does nothing."""
from __future__ import annotations

import torch

from beexbench.models.encoder import EarlyExitEncoder, EncoderConfig


def encoder(p: float) -> EarlyExitEncoder:
    torch.manual_seed(0)
    cfg = EncoderConfig(d_model=16, n_heads=2, n_blocks=1, d_ff=32, dropout=0.0, token_dropout=p)
    return EarlyExitEncoder(cfg, vocab_size=50, max_len=8, num_labels=2)


def test_training_zeroes_a_fraction_of_token_embeddings_and_keeps_positions():
    model = encoder(0.3).train()
    ids = torch.randint(1, 50, (500, 8))
    torch.manual_seed(1)
    h = model.embed(ids)
    pos_only = model.emb_norm(model.pos(torch.arange(8)))  # what a dropped token becomes
    with_tok = model.emb_norm(model.tok(ids) + model.pos(torch.arange(8)))
    dropped = torch.isclose(h, pos_only.expand_as(h), atol=1e-6).all(-1)
    kept = torch.isclose(h, with_tok, atol=1e-6).all(-1)
    assert bool((dropped ^ kept).all())  # every token is exactly one of the two
    share = dropped.float().mean().item()
    assert abs(share - 0.3) < 0.02  # 4,000 seeded Bernoulli(0.3) draws, SE 0.007


def test_inference_is_unchanged_by_token_dropout():
    ids = torch.randint(1, 50, (4, 8))
    mask = torch.ones(4, 8, dtype=torch.bool)
    a, b = encoder(0.5).eval(), encoder(0.0).eval()
    b.load_state_dict(a.state_dict())
    assert torch.equal(a(ids, mask)[0], b(ids, mask)[0])
    assert not torch.equal(a.train().embed(ids), b.train().embed(ids))
