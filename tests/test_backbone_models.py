"""Issue 17, step 2: every model on the shared encoder takes ``backbone`` (``scratch`` | a registered
backbone | ``hf:<dir>``): the checkpoint's architecture and weights, the task checked against its
vocabulary, the provenance recorded, checkpoints that load back without the backbone's files."""
from __future__ import annotations

import hashlib
import json
import shutil

import pytest
import torch

from beexbench.adapters.base import TaskSpec
from beexbench.adapters.registry import create_model, get_adapter_class
from beexbench.adapters.spec import SECTIONS, BackboneSpec, ModelSpec
from beexbench.errors import BeexError, ConfigError
from tests.test_backbone_bert import MAX_LEN, TINY, assert_matches_bert

transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    """A tiny BertModel saved in Hugging Face format (every tensor random, so a swapped mapping shows)."""
    path = tmp_path_factory.mktemp("tiny-bert")
    torch.manual_seed(0)
    ref = transformers.BertModel(transformers.BertConfig(**TINY, hidden_act="gelu", layer_norm_eps=1e-12))
    with torch.no_grad():
        for name, p in ref.named_parameters():
            p.copy_(torch.randn_like(p) * 0.3 + (1.0 if "LayerNorm.weight" in name else 0.0))
    ref.save_pretrained(path)
    (path / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
                                              + [f"w{i}" for i in range(TINY["vocab_size"] - 5)]) + "\n")
    return path, ref.eval()


def _task(vocab_size: int = TINY["vocab_size"], max_len: int = MAX_LEN) -> TaskSpec:
    return TaskSpec("t", 3, vocab_size, max_len)


def _batch():
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(1, TINY["vocab_size"], (3, MAX_LEN), generator=g)
    mask = torch.ones(3, MAX_LEN, dtype=torch.bool)
    mask[1, 7:] = False
    mask[2, 3:] = False
    ids[~mask] = 0
    return ids, mask


def _assert_matches_bert(model, ref) -> None:
    assert_matches_bert(model, ref, *_batch())


# -- the spec ------------------------------------------------------------------------------------
def test_backbone_section_defaults_to_scratch_and_old_configs_still_load():
    assert SECTIONS["backbone"] is BackboneSpec
    assert ModelSpec().backbone == BackboneSpec("scratch", None)
    assert ModelSpec().to_dict()["backbone"] == {"name": "scratch", "sha256": None, "init_from": None, "ffn": "pretrained"}
    old = {k: v for k, v in ModelSpec().to_dict().items() if k not in ("backbone", "distill")}  # recorded before the sections
    assert ModelSpec.from_dict(old) == ModelSpec()
    assert ModelSpec.from_dict({"backbone": {"name": "minilm-l6"}}).backbone.name == "minilm-l6"
    assert ModelSpec().merged({"backbone.name": "hf:/some/dir"}).backbone.name == "hf:/some/dir"


@pytest.mark.parametrize("name", ["bert-base-uncased", "hf:", "", 3])
def test_an_unknown_backbone_is_refused_when_the_spec_is_made(name):
    with pytest.raises(ConfigError, match="model.backbone.name") as err:
        ModelSpec.from_dict({"backbone": {"name": name}})
    assert len(err.value.problems) == 1 and "\n" not in err.value.problems[0]
    with pytest.raises(ConfigError, match="sha256"):
        ModelSpec.from_dict({"backbone": {"name": "minilm-l6", "sha256": "abc"}})


def test_scratch_models_build_the_same_parameters_as_before():
    """The state-dict hash of test_backbone_bert (the encoder before the BERT options), through create_model."""
    digest = "576638abbd1021229fcce83ed36c2d87175e1273a5cfe40bd972d9df419c21e8"  # EncoderConfig() defaults
    m = create_model("beexformer", TaskSpec("t", 3, 100, 32), {"encoder": {"ffn": "slfn", "dropout": 0.1}})
    desc = "\n".join(f"{k}:{tuple(v.shape)}:{v.dtype}" for k, v in m.model.state_dict().items())
    assert hashlib.sha256(desc.encode()).hexdigest() == digest
    assert m.backbone is None and m.model_spec.backbone == BackboneSpec()


# -- building on a backbone ------------------------------------------------------------------------
def test_fp32_on_a_backbone_computes_the_pretrained_bert(bert_dir):
    path, ref = bert_dir
    m = create_model("fp32", _task(), {"backbone": {"name": f"hf:{path}"}}, seed=3)
    enc = m.model_spec.encoder
    assert (enc.d_model, enc.n_heads, enc.n_blocks, enc.d_ff, enc.ffn) == (32, 4, 2, 64, "gelu")
    assert (enc.type_vocab_size, enc.layer_norm_eps, enc.weight_bits, enc.exit_heads) == (2, 1e-12, 32, True)
    _assert_matches_bert(m.model, ref)
    sha = hashlib.sha256((path / "model.safetensors").read_bytes()).hexdigest()
    assert m.model_spec.backbone.sha256 == sha and m.config["backbone"] == {"name": f"hf:{path}", "sha256": sha, "init_from": None, "ffn": "pretrained"}
    assert m.backbone["sha256"] == sha and m.backbone["unknown"] == [] and m.backbone["position_rows"] == [MAX_LEN, 40]
    assert any(k.startswith("heads.") for k in m.backbone["kept"])
    # the exit heads keep their seeded init: the same as a scratch model's of the same shape and seed
    again = create_model("fp32", _task(), {"backbone": {"name": f"hf:{path}"}}, seed=3)
    heads = {k: v for k, v in m.model.state_dict().items() if k.startswith("heads.")}
    assert all(torch.equal(v, again.model.state_dict()[k]) for k, v in heads.items())
    # a pinned sha256 is checked
    with pytest.raises(BeexError, match="sha256") as err:
        create_model("fp32", _task(), {"backbone": {"name": f"hf:{path}", "sha256": "0" * 64}})
    assert "\n" not in str(err.value)


def test_beexformer_starts_from_the_pretrained_latent_weights(bert_dir):
    path, ref = bert_dir
    m = create_model("beexformer", _task(), {"backbone": {"name": f"hf:{path}"}})
    assert m.model_spec.encoder.weight_bits == 1 and m.model_spec.encoder.ffn == "gelu"
    ours, theirs = m.model.state_dict(), ref.state_dict()
    assert torch.equal(ours["blocks.0.attn.q.weight"], theirs["encoder.layer.0.attention.self.query.weight"])
    assert torch.equal(ours["blocks.1.ffn.w2.weight"], theirs["encoder.layer.1.output.dense.weight"])
    assert torch.equal(ours["tok.weight"], theirs["embeddings.word_embeddings.weight"])
    # with full-precision settings the same latent weights compute BERT
    fp = create_model("beexformer", _task(), {"backbone": {"name": f"hf:{path}"},
                                              "encoder": {"weight_bits": 32, "act_bits": 32}})
    _assert_matches_bert(fp.model, ref)


def test_the_slfn_ablation_keeps_its_own_ffn_and_takes_everything_else_from_the_backbone(bert_dir):
    path, ref = bert_dir
    m = create_model("beexformer-slfn-ffn", _task(), {"backbone": {"name": f"hf:{path}"}}, seed=3)
    enc = m.model_spec.encoder
    assert (enc.ffn, enc.d_ff, enc.d_model) == ("slfn", TINY["intermediate_size"], TINY["hidden_size"])
    ours, theirs = m.model.state_dict(), ref.state_dict()
    assert torch.equal(ours["blocks.1.attn.o.weight"], theirs["encoder.layer.1.attention.output.dense.weight"])
    assert torch.equal(ours["blocks.0.ln2.weight"], theirs["encoder.layer.0.output.LayerNorm.weight"])
    ffn = [k for k in ours if ".ffn." in k]
    assert {k.split(".ffn.")[1].split(".")[0] for k in ffn} == {"w1", "w2", "w3", "w4"}
    assert set(ffn) <= set(m.backbone["kept"])  # seeded, not loaded
    assert any("intermediate.dense" in k for k in m.backbone["ignored"])
    # the same seed builds the same SLFN: its initialisation is the model's own
    again = create_model("beexformer-slfn-ffn", _task(), {"backbone": {"name": f"hf:{path}"}}, seed=3)
    assert all(torch.equal(again.model.state_dict()[k], ours[k]) for k in ffn)


@pytest.mark.parametrize("name", ["pabee-style", "deebert-style", "bibert-style", "bit-style", "beexformer-ffn"])
def test_other_encoder_models_build_on_a_backbone(bert_dir, name):
    path, ref = bert_dir
    m = create_model(name, _task(), {"backbone": {"name": f"hf:{path}"}})
    assert m.model_spec.encoder.n_blocks == 2 and m.backbone is not None
    assert torch.equal(m.model.state_dict()["blocks.0.attn.k.bias"], ref.state_dict()["encoder.layer.0.attention.self.key.bias"])
    if name == "pabee-style":  # its patience grid is made from the checkpoint's depth
        assert m.model_spec.calibration.grid == (1,)


def test_the_task_must_be_encoded_for_the_backbone(bert_dir):
    path, _ = bert_dir
    over = {"backbone": {"name": f"hf:{path}"}}
    with pytest.raises(BeexError, match="vocabulary of 100.*backbone's tokenizer") as err:
        create_model("fp32", _task(vocab_size=120), over)
    assert "\n" not in str(err.value)
    with pytest.raises(BeexError, match="40 positions.*at most 40") as err:
        create_model("fp32", _task(max_len=41), over)
    assert "\n" not in str(err.value)


def test_an_architecture_setting_that_contradicts_the_checkpoint_is_refused(bert_dir):
    path, _ = bert_dir
    with pytest.raises(ConfigError, match="d_model = 64.*32") as err:
        create_model("fp32", _task(), {"backbone": {"name": f"hf:{path}"}, "encoder": {"d_model": 64}})
    assert "\n" not in str(err.value)
    # the model's own registered architecture (fp32's SLFN, the default sizes) gives way silently
    assert create_model("fp32", _task(), {"backbone": {"name": f"hf:{path}"}, "encoder": {"d_model": 32}}).model_spec.encoder.d_model == 32


def test_missing_backbone_files_are_one_line_errors(tmp_path):
    with pytest.raises(BeexError, match="no such folder") as err:
        create_model("fp32", _task(), {"backbone": {"name": f"hf:{tmp_path / 'nothing'}"}})
    assert "\n" not in str(err.value)


def test_config_problems_checks_a_backbone_model_for_its_own_vocabulary(bert_dir, tmp_path):
    path, _ = bert_dir
    cls = get_adapter_class("fp32")
    assert cls.config_problems({"backbone": {"name": f"hf:{path}"}}) == []
    assert cls.config_problems({}) == []
    [problem] = cls.config_problems({"backbone": {"name": f"hf:{path}"}, "encoder": {"n_blocks": 3}})
    assert "n_blocks = 3" in problem
    [problem] = cls.config_problems({"backbone": {"name": f"hf:{tmp_path / 'nothing'}"}})
    assert "no such folder" in problem


def test_a_checkpoint_loads_back_without_the_backbone_files(bert_dir, tmp_path):
    src, ref = bert_dir
    path = tmp_path / "bert"
    shutil.copytree(src, path)
    m = create_model("fp32", _task(), {"backbone": {"name": f"hf:{path}"}}, seed=0)
    with torch.no_grad():
        m.model.heads[0].norm.weight.add_(0.5)  # as if trained
    m.save(tmp_path / "ckpt")
    meta = json.loads((tmp_path / "ckpt" / "checkpoint.json").read_text())
    assert meta["backbone"]["sha256"] == m.model_spec.backbone.sha256
    assert meta["config"]["backbone"]["name"] == f"hf:{path}" and meta["config"]["encoder"]["d_model"] == 32
    shutil.rmtree(path)
    back = get_adapter_class("fp32").load(tmp_path / "ckpt")
    assert back.model_spec == m.model_spec and back.backbone == m.backbone
    ids, mask = _batch()
    with torch.no_grad():
        assert all(torch.equal(a, b) for a, b in zip(m.forward(ids, mask), back.forward(ids, mask)))
    _assert_matches_bert(back.model, ref)
    # a model derived from it (the same trained network, another exit rule) needs no files either
    val = type("Val", (), {})  # derive without calibration: fp32-no-ee has no grid
    no_ee = get_adapter_class("fp32-no-ee").derive(back, val)
    assert no_ee.model_spec.backbone == back.model_spec.backbone and no_ee.backbone == back.backbone
    assert torch.equal(no_ee.model.state_dict()["tok.weight"], back.model.state_dict()["tok.weight"])
