"""Issue 15: broken training is never recorded as ok. A non-finite loss or non-finite weights
fail the cell with a clear error, and nothing is cached in the model store (lr=inf or a NaN
loss used to cache NaN weights that later runs reused)."""
from __future__ import annotations

import errno
import json

import pytest
import torch
from torch import nn

from beexbench.adapters.base import TaskSpec
from beexbench.adapters.checkpoint import META
from beexbench.adapters.encoder_adapter import EncoderAdapter
from beexbench.config import RunConfig, load_config
from beexbench.errors import TrainingDiverged
from beexbench.runner import models as store
from beexbench.runner.run import run_suite
from beexbench.training.batches import EncodedSplit
from beexbench.training.config import TrainConfig
from beexbench.training.loop import train
from conftest import write_tiny_suite

SPEC = TaskSpec("t", 2, vocab_size=30, max_len=8)
TINY = {"encoder": {"d_model": 16, "n_heads": 2, "n_blocks": 2, "d_ff": 16}}


class Toy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(30, 4)
        self.out = nn.Linear(4, 2)

    def forward(self, ids, mask):
        return [self.out(self.emb(ids).mean(1))]


def _split(n: int = 16) -> EncodedSplit:
    g = torch.Generator().manual_seed(0)
    return EncodedSplit(torch.randint(1, 30, (n, 8), generator=g), torch.ones(n, 8, dtype=torch.bool), torch.arange(n) % 2)


def test_a_nan_loss_stops_training():
    loss = lambda outputs, labels: nn.functional.cross_entropy(outputs[-1], labels) * float("nan")  # noqa: E731
    with pytest.raises(TrainingDiverged, match=r"training diverged: the loss is nan at epoch 1, step 1 .*lower model.train.lr"):
        train(Toy(), loss, _split(), _split(), TrainConfig(epochs=2, batch_size=4))


def test_zero_epochs_are_refused():
    with pytest.raises(ValueError, match="train.epochs must be at least 1"):
        train(Toy(), lambda o, y: o[-1].sum(), _split(), _split(), TrainConfig(epochs=0))


def _nan_fitted(name="fp32"):
    adapter = store.build_seeded(name, TINY, SPEC, 0)

    def fit(*args, **kwargs):
        with torch.no_grad():
            next(adapter.module().parameters()).fill_(float("inf"))

    adapter.fit = fit
    return adapter


def _store_entries(root):
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*")) if root.exists() else []


def test_nonfinite_weights_fail_and_are_not_cached(tmp_path, monkeypatch):
    adapter = _nan_fitted()
    monkeypatch.setattr(store, "build_seeded", lambda *a: adapter)
    cfg = RunConfig(models_dir=str(tmp_path / "models"))
    with pytest.raises(TrainingDiverged, match=r"training diverged: fp32's weight .* is not finite \(nothing was cached\)"):
        store.obtain_model("fp32", SPEC, _split(), _split(), cfg, 0)
    assert not [p for p in _store_entries(tmp_path / "models") if p.startswith("t/")]


def test_a_cached_nan_checkpoint_is_refused_not_reused(tmp_path):
    """A store written before the check may hold NaN weights: they are refused, not measured."""
    cfg = RunConfig(models_dir=str(tmp_path / "models"))
    bad = _nan_fitted()
    bad.fit()
    directory = store.checkpoint_dir(store.model_store(cfg), "fp32", SPEC, store.overrides_for("fp32", cfg, 0), 0, None)
    bad.save(directory)
    with pytest.raises(TrainingDiverged, match="holds a non-finite weight .*: delete it and retrain"):
        store.obtain_model("fp32", SPEC, _split(), _split(), cfg, 0)


def test_a_failed_save_leaves_no_temp_folder(tmp_path, monkeypatch):
    """A full disk while saving: the error propagates and no ``.tmp<pid>`` folder is left."""
    adapter = store.build_seeded("fp32", TINY, SPEC, 0)
    adapter.fit = lambda *a, **k: None

    def full_disk(directory):
        directory.mkdir(parents=True)
        (directory / "model.safetensors").write_bytes(b"half")
        raise OSError(errno.ENOSPC, "No space left on device", str(directory))

    adapter.save = full_disk
    monkeypatch.setattr(store, "build_seeded", lambda *a: adapter)
    cfg = RunConfig(models_dir=str(tmp_path / "models"))
    with pytest.raises(OSError):
        store.obtain_model("fp32", SPEC, _split(), _split(), cfg, 0)
    assert not [p for p in _store_entries(tmp_path / "models") if ".tmp" in p]


def test_a_diverged_cell_fails_and_the_others_go_on(tmp_path, monkeypatch):
    monkeypatch.setenv("BEEXBENCH_CACHE", str(tmp_path / "cache"))
    loss = EncoderAdapter.loss
    monkeypatch.setattr(EncoderAdapter, "loss", lambda self, logits, labels: loss(self, logits, labels) * float("nan"))
    cfg = load_config(None, write_tiny_suite(tmp_path, models=("fp32", "majority")))
    summary = run_suite(cfg)
    assert [k.model for k in summary.written] == ["fp32", "majority"]
    ((key, error),) = summary.failed
    assert key.model == "fp32" and error.startswith("TrainingDiverged: training diverged: the loss is nan at epoch 1, step 1")
    cell = json.loads(next((summary.run_dir / "cells").glob("fp32*.json")).read_text())
    assert cell["status"] == "failed" and "training diverged" in cell["error"]
    assert not list((tmp_path / "models").rglob(f"fp32/*/{META}"))  # nothing cached for the diverged model
    assert list((tmp_path / "models").rglob(f"majority/*/{META}"))


def test_infinite_learning_rate_is_caught_when_validation_is_bypassed(tmp_path):
    """The issue's reproduction through the library (the CLI refuses lr=inf up front). Since
    issue 14 the library refuses it up front too: a model's settings are checked when its
    ModelSpec is made, before any training (it used to diverge at the first step)."""
    from beexbench.errors import ConfigError

    cfg = RunConfig(models_dir=str(tmp_path / "models"),
                    model={**TINY, "train": {"lr": float("inf"), "epochs": 1, "batch_size": 4}})
    with pytest.raises(ConfigError, match="'model.train.lr' must be a finite number > 0, got inf"):
        store.obtain_model("fp32", SPEC, _split(), _split(), cfg, 0)
    assert not list((tmp_path / "models").rglob(META))
