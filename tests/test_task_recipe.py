"""A catalog task's model recipe (``register_task(model_recipe=...)``): settings chosen on the
task's validation split for every model on the shared encoder, under the suite's own settings."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from beexbench.config import load_config
from beexbench.data.tasks import model_recipe, register_task, unregister_task
from beexbench.runner.models import overrides_for
from beexbench.runner.train import train_suite
from conftest import write_tiny_csv, write_tiny_suite

RECIPE = {"encoder": {"token_dropout": 0.3, "d_model": 8}, "train": {"weight_decay": 0.05}}


@pytest.fixture
def recipe_task(tmp_path):
    csv = write_tiny_csv(tmp_path / "tiny.csv")
    register_task("tiny-recipe", lambda cache_dir, progress: pd.read_csv(csv), label_names=("neg", "pos"),
                  model_recipe=RECIPE)
    yield "tiny-recipe"
    unregister_task("tiny-recipe")


def test_recipe_sits_under_the_suite_and_the_per_model_settings(tmp_path, recipe_task):
    cfg = load_config(config_file=write_tiny_suite(tmp_path, models=("fp32",)))
    cfg.model_overrides = {"fp32": {"train": {"weight_decay": 0.0}}}
    out = overrides_for("fp32", cfg, 3, model_recipe(recipe_task))
    assert out["encoder"]["token_dropout"] == 0.3  # from the recipe
    assert out["encoder"]["d_model"] == 16  # the suite's [model.encoder] wins over the recipe
    assert out["train"]["weight_decay"] == 0.0 and out["train"]["seed"] == 3  # per-model, then the seed
    assert "encoder" not in overrides_for("majority", cfg, 3, model_recipe(recipe_task))  # floors take none
    assert model_recipe("csv:/d/x.csv?text=t&label=l") == {}  # a user's dataset has no recipe


def test_trained_models_record_the_recipe(tmp_path, recipe_task, monkeypatch):
    monkeypatch.setenv("BEEXBENCH_CACHE", str(tmp_path / "cache"))
    cfg = load_config(config_file=write_tiny_suite(tmp_path, models=("fp32",)), tasks=[recipe_task])
    trained = train_suite(cfg)
    (ckpt,) = trained.written
    meta = json.loads((ckpt / "checkpoint.json").read_text())
    encoder = meta["config"]["encoder"]
    assert encoder["token_dropout"] == 0.3 and encoder["d_model"] == 16
