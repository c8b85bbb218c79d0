"""A run with a pretrained backbone (issue 17): the runner encodes the task with the backbone's
own WordPiece vocabulary for the model built on it, and with the task's tokenizer for a model
trained from scratch beside it, in the same run."""
from __future__ import annotations

import json

import pytest
import torch

from beexbench.adapters.registry import load_model
from beexbench.config import load_config
from beexbench.runner import run_suite
from conftest import BAD, FILL, GOOD, write_tiny_csv

transformers = pytest.importorskip("transformers")


def tiny_bert(path):
    """A random tiny BERT whose vocabulary holds the tiny task's words (plus digits as word pieces)."""
    words = sorted(set(GOOD + BAD + FILL))
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + words + [str(d) for d in range(10)] + [f"##{d}" for d in range(10)]
    torch.manual_seed(0)
    cfg = transformers.BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                  intermediate_size=64, max_position_embeddings=128, hidden_act="gelu")
    transformers.BertModel(cfg).save_pretrained(path)
    (path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    return path, len(vocab)


def test_a_backbone_model_and_a_scratch_model_run_side_by_side(tmp_path, monkeypatch):
    monkeypatch.setenv("BEEXBENCH_CACHE", str(tmp_path / "cache"))
    bert, vocab_size = tiny_bert(tmp_path / "bert")
    csv = write_tiny_csv(tmp_path / "tiny.csv")
    suite = tmp_path / "backbone.toml"
    suite.write_text(f"""
suite = "backbone-test"
models = ["fp32", "deebert-style"]
tasks = ["csv:{csv}?text=text&label=label&name=tiny"]
seeds = [0]
energy = false
floors = false
results_dir = "{tmp_path / 'results'}"
models_dir = "{tmp_path / 'models'}"

[model.train]
epochs = 1
batch_size = 32

[model_overrides.fp32.backbone]
name = "hf:{bert}"

[model_overrides.deebert-style.encoder]
d_model = 16
n_heads = 2
n_blocks = 2
d_ff = 16

[latency]
warmup = 1
min_iters = 3
min_seconds = 0.05
max_seconds = 1.0
batch_sizes = [1]
samples = 4
isolate = false
""")
    summary = run_suite(load_config(config_file=suite))
    assert not summary.failed, summary.failed
    records = {p.name.split("__")[0]: json.loads(p.read_text()) for p in summary.run_dir.glob("cells/*.json")}
    assert set(records) == {"fp32", "deebert-style"}
    pretrained, scratch = (load_model(records[m]["model"]["checkpoint"]) for m in ("fp32", "deebert-style"))
    # the backbone model read the task through the backbone's vocabulary, the other through the task's own
    assert pretrained.spec.vocab_size == vocab_size != scratch.spec.vocab_size
    assert pretrained.spec.tokenizer_sha256 != scratch.spec.tokenizer_sha256
    config = records["fp32"]["model"]["config"]
    assert config["backbone"]["name"] == f"hf:{bert}" and len(config["backbone"]["sha256"]) == 64
    assert config["encoder"]["d_model"] == 32 and config["encoder"]["ffn"] == "gelu"  # the checkpoint's architecture
    assert records["deebert-style"]["model"]["config"]["backbone"]["name"] == "scratch"
    assert 0 <= records["fp32"]["metrics"]["accuracy"]["value"] <= 1
