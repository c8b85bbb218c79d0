"""The packed engine on BERT-configured encoders (issue 17): ``type_vocab_size`` (the token-type
row 0 folded into the position table at packing) and ``layer_norm_eps`` (the embedding and block
LayerNorms; the exit heads keep 1e-5) with the erf GELU FFN. Every engine path (the module path,
the per-block C++ steps, the whole-model C++ op in each compiled instruction set) gives the float
beexformer's exit blocks and logits bit for bit (the float model under ``canonical_numerics``: the
engine's order of every pre-sign sum) at batch 1 and batch 8; the files
round-trip; a beexformer built on a tiny ``hf:`` BERT folder derives its packed deployment."""
from __future__ import annotations

import json
import shutil

import pytest
import torch

from beexbench.adapters.base import TaskSpec
from beexbench.adapters.checkpoint import META
from beexbench.adapters.registry import create_model, get_adapter_class, load_model
from beexbench.engine import _native, pack_encoder
from beexbench.errors import BeexError
from beexbench.models.canonical import canonical_numerics
from beexbench.models.exits import AbsoluteEntropy, ExitRule, FractionalEntropy
from engine_variants import each_isa_and_thread_count
from tests.test_backbone_bert import BERT_JSON, TINY, _fake_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")

SPEC = TaskSpec(task="bert-engine", num_labels=3, vocab_size=100, max_len=16)
ENC = {"d_model": 64, "n_heads": 4, "n_blocks": 3, "d_ff": 128, "ffn": "gelu", "type_vocab_size": 2,
       "layer_norm_eps": 1e-12}
RULES = [FractionalEntropy(0.1), FractionalEntropy(0.5), AbsoluteEntropy(0.9), ExitRule()]
PATHS = ["python", "steps", "whole"]  # BEEXBENCH_ENGINE=python, =steps, unset (the whole-model op)


def randomised(seed: int = 0):
    """A W1A1 beexformer with BERT's options, every tensor random. The encoder's tables and
    LayerNorm outputs are small (~0.02-0.05), so that eps 1e-12 vs 1e-5 and the token-type row
    change the logits far beyond 1e-5 (test_the_options_matter_at_this_scale): a path that
    ignored either would fail here."""
    torch.manual_seed(seed)
    adapter = create_model("beexformer", SPEC, {"encoder": ENC})
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in adapter.module().named_parameters():
            r = torch.randn(p.shape, generator=g)
            if name.startswith("heads."):  # the task's heads: logits of order 1, entropies spread out
                p.copy_(r * 0.3 + 1.0 if name.endswith("norm.weight") else r * 0.5)
            elif name.endswith(("norm.weight", "ln1.weight", "ln2.weight")):
                p.copy_(0.05 * (1.0 + 0.3 * r))
            elif name.endswith(("norm.bias", "ln1.bias", "ln2.bias", ".shift")):
                p.copy_(0.01 * r)
            elif name.endswith(".bias"):
                p.copy_(0.005 * r)
            elif name.endswith(("tok.weight", "pos.weight", "typ.weight")):
                p.copy_(0.02 * r)
            else:  # binarized Linear weights: sign and per-row mean |W|
                p.copy_(0.005 * r)
    adapter.module().eval()
    return adapter


def derived(float_adapter):
    """beexformer-packed derived through the adapter (int8 token rows by default); the float
    model then reads those decoded rows, so both compute the same network."""
    packed = get_adapter_class("beexformer-packed").derive(float_adapter, None)
    with torch.no_grad():
        float_adapter.module().tok.weight.copy_(packed.model.tok.table())
    return packed


@pytest.fixture(scope="module")
def pair():
    f = randomised()
    return f, derived(f)


def data(n: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, SPEC.max_len + 1, (n,), generator=g)
    lengths[0] = SPEC.max_len - 5  # some padding in the first row (the batch-1 case below)
    mask = torch.arange(SPEC.max_len)[None, :] < lengths[:, None]
    return torch.randint(1, SPEC.vocab_size, (n, SPEC.max_len), generator=g) * mask, mask


def run(model, path: str, ids, mask, rule, monkeypatch):
    if path != "python" and _native.ops() is None:
        pytest.skip(f"the fused engine is not available here: {_native.mode()}")
    if path == "whole":
        monkeypatch.delenv("BEEXBENCH_ENGINE", raising=False)
    else:
        monkeypatch.setenv("BEEXBENCH_ENGINE", path)
    assert (_native.ops() is None) == (path == "python")
    with torch.no_grad():
        return model.infer(ids, mask, rule)


def same(a, b) -> None:
    assert torch.equal(a.exit_block, b.exit_block), (a.exit_block, b.exit_block)
    assert torch.equal(a.logits, b.logits), (a.logits - b.logits).abs().max()


def reference(f, ids, mask):
    """The float model's prediction in the engine's numerics."""
    with canonical_numerics():
        return f.predict(ids, mask)


def test_the_packed_model_folds_the_type_row_and_keeps_the_eps(pair):
    f, p = pair
    model, fm = p.model, f.module()
    assert model.token_type_folded and model.eps == 1e-12 and not hasattr(model, "typ")
    assert model.emb_norm.eps == 1e-12 and all(b.ln1.eps == b.ln2.eps == 1e-12 for b in model.blocks)
    assert all(h.norm.eps == 1e-5 for h in model.heads)  # the exit heads keep torch's eps, as ExitHead
    ids, _ = data(8, seed=1)
    with torch.no_grad(), canonical_numerics():  # the fold is the float model's own add: bit-identical
        assert torch.equal(model.embed(ids), fm.embed(ids))


@pytest.mark.parametrize("path", PATHS)
def test_every_path_matches_the_float_model(pair, path, monkeypatch):
    f, p = pair
    ids, mask = data(8, seed=2)
    spread = set()
    for rule in RULES:
        f.set_rule(rule)
        ref = reference(f, ids, mask)
        spread |= set(ref.exit_block.tolist())
        same(ref, run(p.model, path, ids, mask, rule, monkeypatch))
        for i in range(4):  # batch 1: one row with its padding, three cut to their tokens
            n = SPEC.max_len if i == 0 else int(mask[i].sum())
            same(reference(f, ids[i:i + 1, :n], mask[i:i + 1, :n]), run(p.model, path, ids[i:i + 1, :n], mask[i:i + 1, :n], rule, monkeypatch))
    assert len(spread) >= 2, "the rules should make rows exit at different blocks"


def test_every_instruction_set_and_two_threads(pair):
    """The whole-model loops (and their erf GELU) in each compiled variant, batch 8 on 1 and 2 threads."""
    ops = _native.ops()
    if ops is None:
        pytest.skip(f"the fused engine is not available here: {_native.mode()}")
    f, p = pair
    ids, mask = data(8, seed=3)
    for rule in (FractionalEntropy(0.1), ExitRule()):
        f.set_rule(rule)
        ref = reference(f, ids, mask)
        for _ in each_isa_and_thread_count(ops):
            with torch.no_grad():
                same(ref, p.model.infer(ids, mask, rule))


def test_the_options_matter_at_this_scale(pair):
    """Packed without the type row, or with eps 1e-5, the logits move far beyond the 1e-5 the
    paths are held to: the comparisons above do see both options."""
    f = pair[0]
    state = dict(f.module().state_dict())
    ids, mask = data(8, seed=4)
    f.set_rule(ExitRule())
    ref = f.predict(ids, mask).logits
    no_type = {k: v for k, v in state.items() if k != "typ.weight"}
    for enc, st in (({**ENC, "layer_norm_eps": None}, state), ({**ENC, "type_vocab_size": None}, no_type)):
        wrong = pack_encoder(st, {**f.config["encoder"], **enc}, vocab_size=SPEC.vocab_size, max_len=SPEC.max_len,
                             num_labels=SPEC.num_labels, embedding_bits=32)
        with torch.no_grad():
            assert (wrong.infer_modules(ids, mask, ExitRule()).logits - ref).abs().max() > 1e-3


def test_files_round_trip(pair, tmp_path):
    _, p = pair
    p.save(tmp_path / "p")
    doc = json.loads((tmp_path / "p" / META).read_text())
    header = doc["packed"]
    assert header["version"] == 2 and header["embedding"]["token_type_folded"] is True
    assert header["architecture"]["encoder"]["type_vocab_size"] == 2
    assert header["architecture"]["encoder"]["layer_norm_eps"] == 1e-12
    back = load_model(tmp_path / "p")
    assert back.model.token_type_folded and back.model.eps == 1e-12
    assert torch.equal(back.model.pos.weight, p.model.pos.weight)
    ids, mask = data(8, seed=5)
    for rule in (FractionalEntropy(0.1), ExitRule()):
        with torch.no_grad():
            a, b = p.model.infer(ids, mask, rule), back.model.infer(ids, mask, rule)
        assert torch.equal(a.logits, b.logits) and torch.equal(a.exit_block, b.exit_block)
    # a header that does not say the type row is in pos.weight is refused (its positions would be wrong)
    del header["embedding"]["token_type_folded"]
    (tmp_path / "p" / META).write_text(json.dumps(doc))
    with pytest.raises(BeexError, match="token_type_folded.*re-derive it") as err:
        load_model(tmp_path / "p")
    assert "\n" not in str(err.value)


def test_an_unusable_option_value_is_refused():
    with pytest.raises(BeexError, match="layer_norm_eps"):
        pack_encoder({}, {**randomised().config["encoder"], "layer_norm_eps": 0.0}, vocab_size=SPEC.vocab_size,
                     max_len=SPEC.max_len, num_labels=SPEC.num_labels)


def test_beexformer_on_an_hf_bert_folder_derives_its_packed_deployment(tmp_path):
    """End to end: a tiny random BERT folder (config.json, model.safetensors, vocab.txt) as the
    ``hf:`` backbone of beexformer; beexformer-packed derived from it gives its predictions.
    Untrained, its input shifts are 0 and its FFN pre-activations large: GELU outputs that are -0
    or ~-1e-7 by the last bit of an erf approximation become the next layer's bits, which is what
    the whole-model op's gelu_ffn settles with ATen's kernel (a libm-erf GELU fails here)."""
    bert = tmp_path / "bert"
    bert.mkdir()
    (bert / "config.json").write_text(json.dumps(BERT_JSON))
    _fake_checkpoint(bert / "model.safetensors", seed=3)
    (bert / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
                                              + [f"w{i}" for i in range(TINY["vocab_size"] - 5)]) + "\n")
    task = TaskSpec("t", 3, TINY["vocab_size"], 12)
    torch.manual_seed(0)
    f = create_model("beexformer", task, {"backbone": {"name": f"hf:{bert}"}})
    enc = f.config["encoder"]
    assert (enc["type_vocab_size"], enc["layer_norm_eps"], enc["ffn"], enc["weight_bits"]) == (2, 1e-12, "gelu", 1)
    p = derived(f)
    assert p.model.token_type_folded and p.model.eps == 1e-12
    assert p.backbone == f.backbone and p.backbone["sha256"] == f.model_spec.backbone.sha256
    p.save(tmp_path / "packed")  # the provenance travels with the deployable files, which need no backbone files
    shutil.move(bert, tmp_path / "elsewhere")
    back = load_model(tmp_path / "packed")
    assert back.backbone == f.backbone and back.model_spec == p.model_spec
    g = torch.Generator().manual_seed(6)
    mask = torch.arange(12)[None, :] < torch.randint(1, 13, (8, 1), generator=g)
    ids = torch.randint(1, TINY["vocab_size"], (8, 12), generator=g) * mask
    pre = []  # the case above is really exercised: pre-activations in GELU's tiny tail
    hooks = [b.ffn.w1.register_forward_hook(lambda m, i, o: pre.append(o)) for b in f.module().blocks]
    with torch.no_grad():
        f.module()(ids, mask)
    for h in hooks:
        h.remove()
    assert any(bool(((o > -6) & (o < -5)).any()) for o in pre)
    for rule in (f.exit_rule(), ExitRule()):
        f.set_rule(rule)
        p.rule = rule
        with torch.no_grad():
            same(reference(f, ids, mask), p.predict(ids, mask))
            same(reference(f, ids[:1], mask[:1]), p.predict(ids[:1], mask[:1]))
