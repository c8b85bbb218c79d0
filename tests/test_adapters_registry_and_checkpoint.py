import json

import pytest
import torch

from beexbench.adapters.base import TaskSpec
from beexbench.adapters.registry import create_model, list_models, load_model
from beexbench.errors import BeexError, UnknownNameError

TINY = {"encoder": {"d_model": 16, "n_heads": 2, "n_blocks": 2, "d_ff": 16}}
SPEC = TaskSpec("t", 2, 40, 8)


def test_unknown_model_suggests_close_names():
    with pytest.raises(UnknownNameError, match="did you mean beexformer"):
        create_model("beexformr", SPEC)


def test_builtin_and_entry_point_models_are_listed():
    names = list_models()
    assert "beexformer" in names and "fp32" in names  # fp32 comes through the entry point


def test_unknown_override_key_is_named():
    with pytest.raises(BeexError, match="model.encoder.d_modl"):
        create_model("beexformer", SPEC, {"encoder": {"d_modl": 8}})


def test_round_trip_and_refusals(tmp_path):
    m = create_model("beexformer", SPEC, TINY)
    ids = torch.randint(1, 40, (3, 8))
    mask = torch.ones(3, 8, dtype=torch.bool)
    m.save(tmp_path / "a")
    back = load_model(tmp_path / "a")
    assert type(back).name == "beexformer"
    for x, y in zip(m.forward(ids, mask), back.forward(ids, mask)):
        assert torch.equal(x, y)
    # tampered weights
    w = tmp_path / "a" / "weights.safetensors"
    raw = bytearray(w.read_bytes())
    raw[-1] ^= 0xFF
    w.write_bytes(bytes(raw))
    with pytest.raises(BeexError, match="tampered"):
        load_model(tmp_path / "a")
    # foreign JSON
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "checkpoint.json").write_text(json.dumps({"hello": 1}))
    with pytest.raises(BeexError, match="not a beexbench checkpoint"):
        load_model(tmp_path / "b")
    # another adapter's checkpoint
    m.save(tmp_path / "c")
    from beexbench.adapters.registry import get_adapter_class

    with pytest.raises(BeexError, match="written by adapter 'beexformer', not 'fp32'"):
        get_adapter_class("fp32").load(tmp_path / "c")
    with pytest.raises(BeexError, match="no checkpoint"):
        load_model(tmp_path / "missing")


def test_training_record_round_trip_and_foreign_record():
    from beexbench.adapters.base import FitReport

    rep = FitReport(epochs=2, steps=10, seconds=1.5, best_epoch=2, val_accuracy=0.25,
                    history=({"epoch": 1, "train_loss": 1.0, "val_accuracy": 0.2},), val_metric="pearson_r")
    assert FitReport.from_dict(json.loads(json.dumps(rep.to_dict()))) == rep
    assert FitReport.from_dict(None) is None
    with pytest.raises(BeexError, match="training record.*retrain"):
        FitReport.from_dict({**rep.to_dict(), "made_up_field": 1})
