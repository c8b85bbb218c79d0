"""Model selection on validation: by the score the caller names (the deployed exit rule for
early-exit models), with optional early stopping, restoring the chosen epoch's weights."""
from __future__ import annotations

import copy

import torch

from beexbench.adapters.base import TaskSpec
from beexbench.runner.models import build_seeded
from beexbench.training.batches import EncodedSplit
from beexbench.training.config import TrainConfig
from beexbench.training.loop import train

SPEC = TaskSpec(task="select", num_labels=2, vocab_size=30, max_len=8)
TINY = {"encoder": {"d_model": 16, "n_heads": 2, "n_blocks": 3, "d_ff": 16}, "train": {"epochs": 2, "batch_size": 16}}


def split(n: int, seed: int) -> EncodedSplit:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, SPEC.vocab_size, (n, SPEC.max_len), generator=g)
    return EncodedSplit(ids, torch.ones_like(ids, dtype=torch.bool), (ids[:, 0] > 15).long())


def test_best_epoch_by_select_restored_and_patience_stops():
    model = build_seeded("fp32", TINY, SPEC, seed=0).module()
    scores, states = iter([0.5, 0.9, 0.1, 0.2, 0.95]), []

    def select(m):
        states.append(copy.deepcopy(m.state_dict()))
        return next(scores)

    loss = lambda logits, y: torch.nn.functional.cross_entropy(logits[-1], y)  # noqa: E731
    cfg = TrainConfig(epochs=5, batch_size=16, patience=2)
    log = train(model, loss, split(64, 0), split(32, 1), cfg, select=select, selected_by="test score")
    # epoch 2 is best; epochs 3 and 4 do not improve it: stop before epoch 5 (whose 0.95 is never seen)
    assert log["best_epoch"] == 2 and log["epochs"] == 4 and log["stopped_early"]
    assert log["val_accuracy"] == 0.9 and log["selected_by"] == "test score"
    assert [h["val_accuracy"] for h in log["history"]] == [0.5, 0.9, 0.1, 0.2]
    assert all(torch.equal(v, states[1][k]) for k, v in model.state_dict().items())


def test_early_exit_model_is_selected_by_its_deployed_rule():
    adapter = build_seeded("beexformer", TINY, SPEC, seed=0)
    report = adapter.fit(split(96, 0), split(48, 1))
    assert report.selected_by.startswith("deployed rule (fractional-entropy")
    # the recorded best score is the calibrated rule's validation score of the restored epoch
    assert report.val_accuracy == report.calibration["deployed_accuracy"]
    plain = build_seeded("transformer", TINY, SPEC, seed=0).fit(split(96, 0), split(48, 1))
    assert plain.selected_by == "final exit" and plain.calibration is None
