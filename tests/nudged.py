"""A model moved off its initialisation by a few optimiser steps (signs, shifts, scales and
tables no longer at their init values), for tests that compare two ways of running it."""
from __future__ import annotations

import torch

from beexbench.adapters.registry import create_model


def nudged(name: str, spec, overrides, ids: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor, steps: int,
           seed: int = 0):
    """``create_model(name, spec, overrides)`` from ``seed``, then ``steps`` AdamW steps (lr 1e-2)
    on the mean of every exit's cross-entropy on one batch; returned in eval mode."""
    torch.manual_seed(seed)
    adapter = create_model(name, spec, overrides)
    model = adapter.module()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(steps):
        opt.zero_grad()
        torch.stack([torch.nn.functional.cross_entropy(lg, labels) for lg in model(ids, mask)]).mean().backward()
        opt.step()
    model.eval()
    return adapter
