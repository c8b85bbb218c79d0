"""Size profiler: hand-computed bits of a tiny model, disk bytes, ratio arithmetic."""
from __future__ import annotations

import json
import os
import warnings

import pytest
import torch
from torch import nn

from beexbench.adapters.base import Precision, TaskSpec
from beexbench.adapters.registry import create_model, get_adapter_class, list_models
from beexbench.errors import BeexError
from beexbench.profilers.size import SizeRecord, measure_size, size_ratio
from conftest import runnable

D, FF, V, L, C = 8, 16, 50, 10, 2
SPEC = TaskSpec("t", C, V, L)
TINY = {"n_blocks": 1, "d_model": D, "n_heads": 2, "d_ff": FF}


def tiny(name: str, **encoder):
    # fp32-shallow is exit.min_exit blocks deep, at most the run's depth (1 block here)
    extra = {"exit": {"min_exit": 1}} if name == "fp32-shallow" else {}
    return create_model(name, SPEC, {"encoder": {**TINY, **encoder}, **extra})


# hand count for one block with the SLFN and one exit head
BIN_ELEMS = 4 * D * D + 4 * D * FF  # Q, K, V, O + w1..w4
BIN_ROWS = 4 * D + (FF + D + FF + D)  # output rows of Q, K, V, O, w1, w2, w3, w4
EMB_ELEMS = V * D + L * D  # token + position tables
BIASES = 4 * D + (FF + D + FF + D)
SHIFTS = 4 * D + (D + FF + D + FF)  # learnable input shift of every W1A1 Linear (its in_features)
NORMS = 2 * D * 3 + 2 * D  # emb_norm, ln1, ln2 + the head's LayerNorm
HEAD = D * C + C


def test_beexformer_tiny_bits_by_hand():
    rec = measure_size(tiny("beexformer"))
    fp32_elems = EMB_ELEMS + BIASES + SHIFTS + NORMS + HEAD
    assert rec.bits["binary_weights"] == BIN_ELEMS
    assert rec.bits["scales"] == 32 * BIN_ROWS
    assert rec.bits["fp32"] == 32 * fp32_elems
    assert rec.bits["int8"] == rec.bits["int8_scales"] == 0
    assert rec.bits["embeddings"] == 32 * EMB_ELEMS
    assert rec.total_bits == BIN_ELEMS + 32 * BIN_ROWS + 32 * fp32_elems
    assert rec.total_bits_without_embeddings == rec.total_bits - 32 * EMB_ELEMS
    assert rec.total_bytes == rec.total_bits / 8
    assert rec.params == BIN_ELEMS + fp32_elems
    assert rec.disk_bytes is None and rec.disk_files == ()
    json.dumps(rec.to_dict())


def test_fp32_tiny_bits_by_hand():
    rec = measure_size(tiny("fp32"))
    elems = EMB_ELEMS + BIN_ELEMS + BIASES + NORMS + HEAD  # no shifts without binary activations
    assert rec.bits["fp32"] == 32 * elems and rec.total_bits == 32 * elems
    assert rec.bits["binary_weights"] == rec.bits["scales"] == 0
    assert rec.total_bits_without_embeddings == 32 * (elems - EMB_ELEMS)


def test_binary_embedding_counts_bits_and_row_scales():
    rec = measure_size(tiny("beexformer", binary_embedding=True))
    assert rec.bits["embeddings"] == V * D + 32 * V + 32 * L * D  # sign(E) + alpha per token, fp32 positions
    assert rec.bits["binary_weights"] == BIN_ELEMS + V * D


def test_disk_bytes_are_the_file_sizes(tmp_path):
    a, b = tmp_path / "model.safetensors", tmp_path / "meta.json"
    a.write_bytes(b"\0" * 1234)
    b.write_text("{}")
    rec = measure_size(tiny("beexformer"), [a, b])
    assert rec.disk_bytes == os.path.getsize(a) + os.path.getsize(b) == 1236
    assert rec.disk_files == (str(a), str(b))
    with pytest.raises(BeexError, match="not found"):
        measure_size(tiny("beexformer"), [tmp_path / "missing.bin"])


def test_saved_checkpoint_on_disk(tmp_path):
    adapter = tiny("beexformer")
    directory = tmp_path / "ckpt"
    directory.mkdir()
    adapter.save(directory)
    files = adapter.deployable_files(directory)
    rec = measure_size(adapter, files)
    assert rec.disk_bytes == sum(os.path.getsize(p) for p in files) > 0


def _record(bits: int, without: int, disk: int | None) -> SizeRecord:
    return SizeRecord(params=0, bits={}, total_bits=bits, total_bits_without_embeddings=without,
                      total_bytes=bits / 8, disk_bytes=disk)


def test_size_ratio_arithmetic():
    r = size_ratio(_record(100, 40, 50), _record(1000, 800, 200))
    assert r["bits_ratio"] == 0.1 and r["bits_compression"] == 10
    assert r["bits_ratio_without_embeddings"] == 0.05 and r["bits_compression_without_embeddings"] == 20
    assert r["disk_ratio"] == 0.25 and r["disk_compression"] == 4
    r = size_ratio(_record(100, 40, None), _record(1000, 800, 200))
    assert r["disk_ratio"] is None and r["disk_compression"] is None


def test_int8_weights_count_bits_and_scales():
    class Toy(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(V, D)
            self.fc = nn.Linear(D, C)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        q = torch.ao.quantization.quantize_dynamic(Toy(), {nn.Linear}, dtype=torch.qint8)

    class Adapter:
        def module(self):
            return q

        def precision(self):
            return Precision(params={"emb.weight": 32, "fc.weight": 8, "fc.bias": 32})

    rec = measure_size(Adapter())
    assert rec.bits["int8"] == 8 * D * C
    assert rec.bits["int8_scales"] == 64  # per-tensor scale + zero point
    assert rec.bits["fp32"] == 32 * (V * D + C)
    assert rec.bits["embeddings"] == 32 * V * D


@pytest.mark.parametrize("name", runnable(list_models()))
def test_every_model_sizes_consistently(name):
    cls = get_adapter_class(name)
    adapter = tiny(name) if cls.uses_model_spec else create_model(name, SPEC)  # every ModelSpec model tiny
    rec = measure_size(adapter)
    parts = sum(v for k, v in rec.bits.items() if k != "embeddings")
    assert rec.total_bits == parts
    binary = [n for n, b in adapter.precision().params.items() if b == 1]
    module = adapter.module()
    params = dict(module.named_parameters())

    def rows(name):  # a packed layer's weight is logical: its rows are the layer's outputs
        if name in params:
            return params[name].shape[0]
        owner = module.get_submodule(name.rpartition(".")[0])
        return getattr(owner, "out_features", None) or owner.num_embeddings  # a packed table: one scale per row

    assert rec.bits["scales"] == 32 * sum(rows(n) for n in binary)
