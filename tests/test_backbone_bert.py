"""BERT-format checkpoints in the shared encoder (issue 17): the options, the config mapping, the
strict weight loader, and equivalence with ``transformers``' BertModel on the same files."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from beexbench.adapters.spec import ModelSpec
from beexbench.backbones.bert import bert_sizes, encoder_config_from_bert, load_bert_weights
from beexbench.errors import BeexError, ConfigError
from beexbench.models.encoder import EarlyExitEncoder, EncoderConfig

TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, vocab_size=100,
            max_position_embeddings=40, type_vocab_size=2)
BERT_JSON = {"model_type": "bert", "hidden_act": "gelu", "layer_norm_eps": 1e-12, "pad_token_id": 0,
             "position_embedding_type": "absolute", **TINY}
FP32 = dict(weight_bits=32, act_bits=32, binary_qk=False)  # full precision, as baselines/fp32.py builds it
MAX_LEN = 12


def _encoder(cfg_json: dict = BERT_JSON, max_len: int = MAX_LEN, **over) -> EarlyExitEncoder:
    cfg = EncoderConfig(**{**encoder_config_from_bert(cfg_json), **FP32, **over})
    return EarlyExitEncoder(cfg, vocab_size=bert_sizes(cfg_json)["vocab_size"], max_len=max_len, num_labels=3).eval()


def bert_shapes(cfg: dict) -> dict[str, tuple[int, ...]]:
    """Every tensor of a BERT of config.json ``cfg`` (Hugging Face names, with the pooler)."""
    d, f, n = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"]
    shapes = {"embeddings.word_embeddings.weight": (cfg["vocab_size"], d),
              "embeddings.position_embeddings.weight": (cfg["max_position_embeddings"], d),
              "embeddings.token_type_embeddings.weight": (cfg.get("type_vocab_size", 2), d),
              "embeddings.LayerNorm.weight": (d,), "embeddings.LayerNorm.bias": (d,),
              "pooler.dense.weight": (d, d), "pooler.dense.bias": (d,)}
    for i in range(n):
        p = f"encoder.layer.{i}."
        for name in ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense"):
            shapes[p + name + ".weight"], shapes[p + name + ".bias"] = (d, d), (d,)
        shapes[p + "intermediate.dense.weight"], shapes[p + "intermediate.dense.bias"] = (f, d), (f,)
        shapes[p + "output.dense.weight"], shapes[p + "output.dense.bias"] = (d, f), (d,)
        for ln in ("attention.output.LayerNorm", "output.LayerNorm"):
            shapes[p + ln + ".weight"], shapes[p + ln + ".bias"] = (d,), (d,)
    return shapes


def bert_checkpoint(cfg: dict, seed: int = 0, prefix: str = "") -> dict[str, torch.Tensor]:
    """Random tensors of the shapes of a BERT of config.json ``cfg`` (made without transformers)."""
    g = torch.Generator().manual_seed(seed)
    return {prefix + k: torch.randn(s, generator=g) for k, s in bert_shapes(cfg).items()}


def _fake_checkpoint(path: Path, seed: int = 0, prefix: str = "") -> dict[str, torch.Tensor]:
    """A BERT-named safetensors file made without transformers: random tensors of BERT's shapes."""
    tensors = bert_checkpoint(TINY, seed, prefix)
    save_file(tensors, str(path))
    return tensors


# -- the options: defaults are today's model --------------------------------------------------
def test_default_encoder_builds_the_same_parameters_as_before():
    """sha256 of 'name:shape:dtype' lines of the state dict, computed with the encoder before the
    BERT options (commit 343ecb2); the outputs were also checked bit-identical then."""
    expected = {(): "576638abbd1021229fcce83ed36c2d87175e1273a5cfe40bd972d9df419c21e8",
                (("weight_bits", 32), ("act_bits", 32), ("ffn", "gelu")):
                    "2f086173c6ad500b481552a6189ee9890a1865cb6a0bd04efefbe587578a6f44"}
    for kw, digest in expected.items():
        m = EarlyExitEncoder(EncoderConfig(**dict(kw)), vocab_size=100, max_len=32, num_labels=3)
        desc = "\n".join(f"{k}:{tuple(v.shape)}:{v.dtype}" for k, v in m.state_dict().items())
        assert hashlib.sha256(desc.encode()).hexdigest() == digest, kw
        assert not hasattr(m, "typ")
        assert all(ln.eps == 1e-5 for ln in m.modules() if isinstance(ln, torch.nn.LayerNorm))


def test_bert_options_build_a_token_type_table_and_set_the_eps():
    m = _encoder()
    assert tuple(m.typ.weight.shape) == (2, 32)
    norms = [m.emb_norm] + [ln for b in m.blocks for ln in (b.ln1, b.ln2)]
    assert all(ln.eps == 1e-12 for ln in norms)
    assert all(h.norm.eps == 1e-5 for h in m.heads)  # the exit heads are the task's, not BERT's
    assert all(lin.bias is not None for b in m.blocks for lin in (b.attn.q, b.attn.k, b.attn.v, b.attn.o, b.ffn.w1, b.ffn.w2))
    # the token-type row 0 is added to every token
    ids, mask = torch.randint(1, 100, (2, 5)), torch.ones(2, 5, dtype=torch.bool)
    with torch.no_grad():
        a = m.embed(ids)
        m.typ.weight[0] += 1.0
        assert not torch.allclose(a, m.embed(ids))
        m.typ.weight[1] += 1.0  # type 1 is never used
        b = m.embed(ids)
        m.typ.weight[1] -= 5.0
        assert torch.equal(b, m.embed(ids))
    assert len(m(ids, mask)) == 2


def test_model_spec_checks_the_bert_options():
    spec = ModelSpec.from_dict({"encoder": {**encoder_config_from_bert(BERT_JSON), **FP32}})
    assert spec.encoder.type_vocab_size == 2 and spec.encoder.layer_norm_eps == 1e-12
    assert ModelSpec().encoder.type_vocab_size is None and ModelSpec().encoder.layer_norm_eps is None
    with pytest.raises(ConfigError) as err:
        ModelSpec.from_dict({"encoder": {"type_vocab_size": 0, "layer_norm_eps": -1.0}})
    assert "type_vocab_size" in str(err.value) and "layer_norm_eps" in str(err.value)


def test_the_packed_engine_takes_the_bert_options_and_still_reads_older_headers():
    from beexbench.engine.encoder import check_config

    enc = EncoderConfig().to_dict()
    check_config(enc)
    check_config({k: v for k, v in enc.items() if k not in ("type_vocab_size", "layer_norm_eps")})  # a header from before
    check_config({**enc, "type_vocab_size": 2, "layer_norm_eps": 1e-12})  # tests/test_engine_bert.py runs them
    for key, value in (("type_vocab_size", 0), ("layer_norm_eps", 0.0)):
        with pytest.raises(BeexError, match=key):
            check_config({**enc, key: value})


# -- config.json --------------------------------------------------------------------------------
def test_encoder_config_from_bert_maps_the_sizes():
    assert encoder_config_from_bert(BERT_JSON) == {"d_model": 32, "n_heads": 4, "n_blocks": 2, "d_ff": 64, "ffn": "gelu",
                                                   "type_vocab_size": 2, "layer_norm_eps": 1e-12}
    assert bert_sizes(BERT_JSON) == {"vocab_size": 100, "max_position_embeddings": 40}


@pytest.mark.parametrize("change, words", [
    ({"hidden_act": "gelu_new"}, "hidden_act"),
    ({"hidden_act": "relu"}, "hidden_act"),
    ({"model_type": "roberta"}, "model_type"),
    ({"model_type": None}, "model_type"),
    ({"position_embedding_type": "relative_key"}, "position_embedding_type"),
    ({"is_decoder": True}, "decoder"),
    ({"pad_token_id": 1}, "pad_token_id"),
    ({"hidden_size": 30}, "divisible"),
    ({"num_hidden_layers": 0}, "num_hidden_layers"),
    ({"vocab_size": "100"}, "vocab_size"),
    ({"layer_norm_eps": 0}, "layer_norm_eps"),
])
def test_encoder_config_from_bert_refuses_what_the_encoder_does_not_compute(change, words):
    with pytest.raises(BeexError, match=words) as err:
        encoder_config_from_bert({**BERT_JSON, **change})
    assert "\n" not in str(err.value)


# -- the weights --------------------------------------------------------------------------------
def test_load_maps_every_tensor(tmp_path):
    src = _fake_checkpoint(tmp_path / "model.safetensors")
    m = _encoder()
    heads = {k: v.clone() for k, v in m.state_dict().items() if k.startswith("heads.")}
    report = load_bert_weights(m, tmp_path / "model.safetensors")
    state = m.state_dict()
    assert torch.equal(state["tok.weight"], src["embeddings.word_embeddings.weight"])
    assert torch.equal(state["pos.weight"], src["embeddings.position_embeddings.weight"][:MAX_LEN])
    assert torch.equal(state["typ.weight"], src["embeddings.token_type_embeddings.weight"])
    assert torch.equal(state["blocks.1.attn.k.bias"], src["encoder.layer.1.attention.self.key.bias"])
    assert torch.equal(state["blocks.0.ln1.weight"], src["encoder.layer.0.attention.output.LayerNorm.weight"])
    assert torch.equal(state["blocks.0.ln2.bias"], src["encoder.layer.0.output.LayerNorm.bias"])
    assert torch.equal(state["blocks.1.ffn.w1.weight"], src["encoder.layer.1.intermediate.dense.weight"])
    assert torch.equal(state["blocks.1.ffn.w2.weight"], src["encoder.layer.1.output.dense.weight"])
    assert all(torch.equal(state[k], v) for k, v in heads.items())  # the exit heads stay as built
    assert set(report.filled) == {k for k in state if not k.startswith("heads.")}
    assert set(report.kept) == set(heads) and report.unknown == ()
    assert report.ignored == ("pooler.dense.bias", "pooler.dense.weight")
    assert report.position_rows == (MAX_LEN, 40) and report.prefix == ""
    json.dumps(report.to_dict())


def test_load_takes_a_bert_prefix_and_lists_unknown_tensors(tmp_path):
    src = _fake_checkpoint(tmp_path / "model.safetensors", prefix="bert.")
    save_file({**src, "classifier.weight": torch.zeros(2, 32), "cls.predictions.bias": torch.zeros(100)},
              str(tmp_path / "model.safetensors"))
    m = _encoder()
    report = load_bert_weights(m, tmp_path / "model.safetensors")
    assert report.prefix == "bert." and report.unknown == ("classifier.weight", "cls.predictions.bias")
    assert torch.equal(m.state_dict()["blocks.0.attn.q.weight"], src["bert.encoder.layer.0.attention.self.query.weight"])


def test_load_into_a_binarized_encoder_keeps_its_binarization_parameters(tmp_path):
    _fake_checkpoint(tmp_path / "model.safetensors")
    cfg = EncoderConfig(**encoder_config_from_bert(BERT_JSON))  # BEExformer's W1A1 with BERT's sizes
    m = EarlyExitEncoder(cfg, vocab_size=100, max_len=MAX_LEN, num_labels=3)
    report = load_bert_weights(m, tmp_path / "model.safetensors")
    assert any("input_quantizer" in k for k in report.kept)


def _refused(m: EarlyExitEncoder, path: Path, match: str) -> None:
    before = {k: v.clone() for k, v in m.state_dict().items()}
    with pytest.raises(BeexError, match=match) as err:
        load_bert_weights(m, path)
    assert "\n" not in str(err.value)
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())  # nothing changed


def test_load_refuses_a_missing_tensor(tmp_path):
    src = _fake_checkpoint(tmp_path / "model.safetensors")
    del src["encoder.layer.1.output.dense.bias"]
    save_file(src, str(tmp_path / "model.safetensors"))
    _refused(_encoder(), tmp_path / "model.safetensors", r"blocks\.1\.ffn\.w2\.bias")


def test_load_refuses_a_shape_mismatch(tmp_path):
    _fake_checkpoint(tmp_path / "model.safetensors")
    _refused(_encoder(d_ff=48), tmp_path / "model.safetensors", r"intermediate\.dense\.bias.*\(64,\).*\(48,\)")
    src = _fake_checkpoint(tmp_path / "model.safetensors")
    src["encoder.layer.0.attention.self.value.weight"] = torch.zeros(32, 16)
    save_file(src, str(tmp_path / "model.safetensors"))
    _refused(_encoder(), tmp_path / "model.safetensors", r"value\.weight.*\(32, 16\)")


def test_load_refuses_other_mismatches(tmp_path):
    path = tmp_path / "model.safetensors"
    _fake_checkpoint(path)
    _refused(_encoder(max_len=41), path, "40 positions")
    _refused(_encoder(type_vocab_size=None), path, "type_vocab_size")
    _refused(_encoder(ffn="slfn"), path, "ffn")
    _refused(_encoder({**BERT_JSON, "num_hidden_layers": 3}), path, "no tensor for")  # a layer short
    _refused(_encoder({**BERT_JSON, "num_hidden_layers": 1}), path, "no place")  # a layer too many
    (tmp_path / "pytorch_model.bin").write_bytes(b"not read")
    _refused(_encoder(), tmp_path / "pytorch_model.bin", "safetensors")
    (tmp_path / "bad.safetensors").write_bytes(b"garbage")
    _refused(_encoder(), tmp_path / "bad.safetensors", "safetensors")


# -- equivalence with transformers' BertModel ---------------------------------------------------
def _hidden_states(m: EarlyExitEncoder, ids: torch.Tensor, mask: torch.Tensor) -> list[torch.Tensor]:
    h = m.embed(ids)
    out = [h]
    for block in m.blocks:
        h = block(h, mask)
        out.append(h)
    return out


def test_hidden_states_match_transformers_bert(tmp_path):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    ref = transformers.BertModel(transformers.BertConfig(**TINY, hidden_act="gelu", layer_norm_eps=1e-12))
    with torch.no_grad():  # every tensor random (not LayerNorm's 1 / 0), so a swapped mapping shows
        for name, p in ref.named_parameters():
            p.copy_(torch.randn_like(p) * 0.3 + (1.0 if "LayerNorm.weight" in name else 0.0))
    ref.save_pretrained(tmp_path)
    ref.eval()
    assert (tmp_path / "model.safetensors").is_file()
    cfg_json = json.loads((tmp_path / "config.json").read_text())
    m = _encoder(cfg_json)
    report = load_bert_weights(m, tmp_path / "model.safetensors")
    assert report.unknown == ()

    ids = torch.randint(1, 100, (3, MAX_LEN))
    mask = torch.ones(3, MAX_LEN, dtype=torch.bool)
    mask[1, 7:] = False
    mask[2, 3:] = False
    ids[~mask] = 0
    assert_matches_bert(m, ref, ids, mask)


def assert_matches_bert(model, ref, ids: torch.Tensor, mask: torch.Tensor) -> None:
    """Every hidden state of ``model`` (embeddings, then each block) within 1e-4 of BertModel ``ref``'s on real tokens."""
    with torch.no_grad():
        expected = ref(input_ids=ids, attention_mask=mask.long(), token_type_ids=torch.zeros_like(ids),
                       output_hidden_states=True).hidden_states
        got = _hidden_states(model, ids, mask)
    assert len(got) == len(expected) == ref.config.num_hidden_layers + 1
    for i, (a, b) in enumerate(zip(got, expected)):
        diff = (a - b).abs()[mask].max().item()
        assert diff < 1e-4, f"hidden state {i}: max |diff| {diff:.2e}"


# -- the rest of the benchmark sees an ordinary encoder ----------------------------------------
def test_bert_options_are_counted_sized_and_saved(tmp_path):
    from beexbench.adapters.base import TaskSpec
    from beexbench.adapters.registry import create_model, get_adapter_class
    from beexbench.profilers.ops import count_ops
    from beexbench.profilers.size import measure_size

    spec = TaskSpec("t", 3, TINY["vocab_size"], MAX_LEN)
    enc = {**encoder_config_from_bert(BERT_JSON), "dropout": 0.0}
    fp32 = create_model("fp32", spec, {"encoder": enc})
    plain = create_model("fp32", spec, {"encoder": {**enc, "type_vocab_size": None}})
    ops = count_ops(fp32, 8)
    assert ops.uncounted == {} and ops.notes == () and ops.total_macs == count_ops(plain, 8).total_macs
    size, plain_size = measure_size(fp32).to_dict(), measure_size(plain).to_dict()
    assert size["bits"]["embeddings"] - plain_size["bits"]["embeddings"] == 32 * 2 * 32  # the token-type table, fp32
    with torch.no_grad():
        fp32.model.typ.weight.normal_()
    fp32.save(tmp_path / "ckpt")
    back = get_adapter_class("fp32").load(tmp_path / "ckpt")
    assert back.model.cfg == fp32.model.cfg and torch.equal(back.model.typ.weight, fp32.model.typ.weight)
    ids, mask = torch.randint(1, 100, (2, 6)), torch.ones(2, 6, dtype=torch.bool)
    fp32.model.eval(), back.model.eval()
    with torch.no_grad():
        assert all(torch.equal(a, b) for a, b in zip(fp32.forward(ids, mask), back.forward(ids, mask)))
