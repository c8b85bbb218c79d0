"""Issue 26, defect 3: an untrusted ``hf:`` backbone folder is bounded before anything is allocated.

Every architecture number of its config.json is checked against stated limits and against the
weights file's own tensor shapes (its safetensors header only), its JSON files are size-bounded
and parsed strictly, its vocabulary is checked, all in the validation pass: one line naming the
file and the key, no network built."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import beexbench.adapters.encoder_adapter as encoder_adapter
from beexbench.adapters.registry import get_adapter_class
from beexbench.backbones import checks
from beexbench.backbones.sources import resolve_backbone
from beexbench.errors import BeexError
from tests.test_backbone_sources import TINY_VOCAB, _write_dir, tiny_config


def _refused(folder: Path, *words: str, file: str = "config.json") -> str:
    with pytest.raises(BeexError) as err:
        resolve_backbone(f"hf:{folder}")
    text = str(err.value)
    assert "\n" not in text and str(folder.resolve() / file) in text, text
    for w in words:
        assert w in text, (w, text)
    return text


@pytest.fixture
def no_network_built(monkeypatch):
    """Fails the test if an encoder is constructed (validation must refuse before building one)."""
    def refuse(*a, **k):
        raise AssertionError("an encoder was built from an unchecked backbone")
    monkeypatch.setattr(encoder_adapter, "EarlyExitEncoder", refuse)


# -- the defect as filed ----------------------------------------------------------------------
@pytest.mark.parametrize("key, value, words", [
    ("num_hidden_layers", 1_000_000, "'num_hidden_layers' is 1000000, more than the 128"),
    ("vocab_size", 10**9, "'vocab_size' is 1000000000, more than the 1,048,576"),
])
def test_a_huge_config_is_refused_by_validation_without_building(tmp_path, no_network_built, key, value, words):
    d = _write_dir(tmp_path / "bb", config=tiny_config(**{key: value}), weights_config=tiny_config())
    _refused(d, words)
    [problem] = get_adapter_class("fp32").config_problems({"backbone": {"name": f"hf:{d}"}})
    assert words in problem and "config.json" in problem


def test_the_cli_refuses_a_crafted_folder_with_exit_2_and_one_line(tmp_path):
    """The console script, as a user runs it: exit 2, one line on stderr naming the key, nothing run."""
    from conftest import write_tiny_suite

    d = _write_dir(tmp_path / "bb", config=tiny_config(num_hidden_layers=1_000_000), weights_config=tiny_config())
    suite = write_tiny_suite(tmp_path, models=("fp32",))
    suite.write_text(suite.read_text() + f'\n[model_overrides.fp32.backbone]\nname = "hf:{d}"\n')
    exe = Path(sys.executable).with_name("beexbench")
    cmd = [str(exe)] if exe.is_file() else [sys.executable, "-m", "beexbench.cli"]
    proc = subprocess.run([*cmd, "run", "--config", str(suite)], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "BEEXBENCH_CACHE": str(tmp_path / "cache")})
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "'num_hidden_layers' is 1000000" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "results").exists() or not list((tmp_path / "results").rglob("cells/*.json"))


# -- limits and the weights' own shapes ---------------------------------------------------------
@pytest.mark.parametrize("change, words", [
    ({"num_hidden_layers": 129}, "'num_hidden_layers' is 129, more than the 128"),
    ({"hidden_size": 8194, "num_attention_heads": 2}, "'hidden_size' is 8194, more than the 8,192"),
    ({"num_attention_heads": 512}, "'num_attention_heads' is 512"),
    ({"intermediate_size": 65537}, "'intermediate_size' is 65537"),
    ({"max_position_embeddings": 70000}, "'max_position_embeddings' is 70000"),
    ({"type_vocab_size": 2000}, "'type_vocab_size' is 2000"),
    ({"num_hidden_layers": "6"}, "'num_hidden_layers' must be a positive integer, got '6'"),
    ({"num_hidden_layers": 1.0}, "'num_hidden_layers' must be a positive integer, got 1.0"),
    ({"vocab_size": True}, "'vocab_size' must be a positive integer, got True"),
    ({"type_vocab_size": None}, "'type_vocab_size' must be a positive integer, got None"),
    ({"layer_norm_eps": 2.0}, "'layer_norm_eps' must be a number above 0 and below 1"),
    ({"layer_norm_eps": "1e-12"}, "'layer_norm_eps'"),
    ({"pad_token_id": False}, "pad_token_id"),
    # each within its limit, together an encoder of 68.7e9 parameters
    ({"hidden_size": 8192, "num_attention_heads": 64, "intermediate_size": 65536, "num_hidden_layers": 128},
     "parameters, more than the 1,000,000,000"),
])
def test_sizes_beyond_the_stated_limits_are_refused(tmp_path, change, words):
    _refused(_write_dir(tmp_path / "bb", config=tiny_config(**change), weights_config=tiny_config()), words)


def test_the_parameter_count_is_the_encoders():
    """Hand-computed for the tiny config: embeddings (45 + 64 + 2 + 2 LayerNorm rows) x 8, one block
    of q/k/v/o (4 x (64 + 8)), FFN (8x16 + 16 + 16x8 + 8) and two LayerNorms (2 x 16)."""
    assert checks.parameters(tiny_config()) == 113 * 8 + 4 * 72 + (128 + 16 + 128 + 8) + 32


@pytest.mark.parametrize("change, words", [
    ({"num_hidden_layers": 100}, ("'num_hidden_layers' is 100, ", "holds layers 0..0 (1 of them)")),
    ({"vocab_size": 500_000}, ("'vocab_size' is 500000", "'embeddings.word_embeddings.weight' should be (500000, 8)")),
    ({"max_position_embeddings": 512}, ("'max_position_embeddings' is 512", "(512, 8)")),
    ({"type_vocab_size": 16}, ("'type_vocab_size' is 16",)),
    ({"intermediate_size": 4096}, ("'intermediate_size' is 4096", "intermediate.dense.weight")),
    ({"hidden_size": 64}, ("'vocab_size' is 45 (hidden_size 64)", "(45, 64)")),
])
def test_sizes_that_are_not_the_weights_own_shapes_are_refused(tmp_path, no_network_built, change, words):
    d = _write_dir(tmp_path / "bb", config=tiny_config(**change), weights_config=tiny_config())
    text = _refused(d, *words)
    assert "model.safetensors" in text and "do not belong together" in text
    assert get_adapter_class("fp32").config_problems({"backbone": {"name": f"hf:{d}"}}) == [text]


def test_a_checkpoint_with_a_bert_prefix_and_a_missing_ffn_tensor(tmp_path):
    from safetensors.torch import save

    from tests.test_backbone_bert import bert_checkpoint

    d = _write_dir(tmp_path / "bb")
    tensors = bert_checkpoint(tiny_config(), prefix="bert.")
    (d / "model.safetensors").write_bytes(save(tensors))
    assert resolve_backbone(f"hf:{d}").config["num_hidden_layers"] == 1  # the prefix is understood
    del tensors["bert.encoder.layer.0.intermediate.dense.weight"]
    (d / "model.safetensors").write_bytes(save(tensors))
    _refused(d, "'intermediate_size' cannot be checked", "no tensor 'bert.encoder.layer.0.intermediate.dense.weight'")


# -- the safetensors header, read alone ---------------------------------------------------------
def _header(d: Path, header: dict | bytes, data: bytes = b"", length: int | None = None) -> None:
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    n = len(raw) if length is None else length
    (d / "model.safetensors").write_bytes(n.to_bytes(8, "little") + raw + data)


def test_a_bad_safetensors_header_is_refused_without_reading_tensors(tmp_path):
    d = _write_dir(tmp_path / "bb")
    word = "embeddings.word_embeddings.weight"
    for header, data, length, words in [
        ({}, b"", 2**63, "a header of 9,223,372,036,854,775,808 bytes"),  # would be a huge read
        (b"[" * 50_000 + b"]" * 50_000, b"", None, "its header is not JSON: nested too deep"),
        ({word: {"dtype": "F32", "shape": [45, 8], "data_offsets": [0, 1440]}}, b"", None, "outside its 0 data bytes"),
        ({word: {"dtype": "F32", "shape": [10**12, 8], "data_offsets": [0, 16]}}, b"x" * 16, None, "does not fill"),
        ({word: {"dtype": "F32", "shape": [-1, 8], "data_offsets": [0, 0]}}, b"", None, "has shape [-1, 8]"),
        ({word: {"dtype": "PICKLE", "shape": [1], "data_offsets": [0, 4]}}, b"xxxx", None, "dtype 'PICKLE'"),
        ([1, 2], b"", None, "not an object"),
    ]:
        _header(d, header, data, length)
        _refused(d, "is not a readable safetensors file", words, file="model.safetensors")
    (d / "model.safetensors").write_bytes(b"abc")
    _refused(d, "shorter than its 8-byte header length", file="model.safetensors")


# -- config.json: bounded and strict -----------------------------------------------------------
def test_an_oversized_config_is_refused_before_it_is_read(tmp_path):
    d = _write_dir(tmp_path / "bb")
    with open(d / "config.json", "r+b") as fh:
        fh.truncate(64 << 30)  # a sparse 64 GiB file: reading it would take the machine
    _refused(d, "is 68,719,476,736 bytes, more than the 1,048,576 allowed")


@pytest.mark.parametrize("text, words", [
    ("[" * 200_000 + "]" * 200_000, "nested too deep"),  # a JSON bomb for the recursive parser
    ('{"model_type": "bert", "vocab_size": NaN}', "NaN is not JSON"),
    ('{"model_type": "bert", "layer_norm_eps": 1e999}', "number 1e999 is out of range"),
    ('{"model_type": "bert", "num_hidden_layers": 1, "num_hidden_layers": 1000000}', "duplicate key 'num_hidden_layers'"),
    ('{"model_type": "bert", "vocab_size": 1' + "0" * 5000 + "}", "not readable JSON"),
    ('["model_type", "bert"]', "a BERT config.json is a JSON object, got list"),
    ('"bert"', "got str"),
])
def test_config_json_is_parsed_strictly(tmp_path, text, words):
    d = _write_dir(tmp_path / "bb")
    (d / "config.json").write_text(text)
    _refused(d, words)


def test_tokenizer_config_must_be_a_bounded_object(tmp_path):
    d = _write_dir(tmp_path / "bb")
    (d / "tokenizer_config.json").write_text("[true]")
    _refused(d, "is not a JSON object", file="tokenizer_config.json")
    (d / "tokenizer_config.json").write_text('{"do_lower_case": "yes"}')
    _refused(d, "do_lower_case", file="tokenizer_config.json")
    with open(d / "tokenizer_config.json", "r+b") as fh:
        fh.truncate(2 << 20)
    _refused(d, "more than the 1,048,576 allowed", file="tokenizer_config.json")


# -- vocab.txt, in the validation pass ----------------------------------------------------------
def test_a_bad_vocabulary_is_refused_by_validation(tmp_path, no_network_built):
    d = _write_dir(tmp_path / "bb")
    vocab = d / "vocab.txt"
    good = vocab.read_bytes()
    cases = [
        (b"[PAD]\n[UNK]\n[CLS]\n[SEP]\n\xff\xfe\n", "is not UTF-8 text (byte 24)"),
        (b"[PAD]\n[UNK]\n[CLS]\n[SEP]\nab\x00c\n", "holds a NUL character"),
        (good + b"extra\n", "has 46 tokens but config.json's vocab_size is 45"),
        (good.replace(b"[SEP]\n", b""), r"lacks [SEP]"),
        (b"[UNK]\n" + good.replace(b"[UNK]\n", b""), r"[PAD] is id 1"),
    ]
    for data, words in cases:
        vocab.write_bytes(data)
        text = _refused(d, words, file="vocab.txt")
        assert get_adapter_class("fp32").config_problems({"backbone": {"name": f"hf:{d}"}}) == [text]
    with open(vocab, "r+b") as fh:
        fh.truncate(1 << 30)
    _refused(d, "is 1,073,741,824 bytes, more than the 16,777,216 allowed", file="vocab.txt")
    vocab.write_bytes(b"\n".join(good.split(b"\n")[:-3]) + b"\n")  # fewer tokens than vocab_size: fine
    assert resolve_backbone(f"hf:{d}").config["vocab_size"] == len(TINY_VOCAB)
