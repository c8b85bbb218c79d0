"""Local CSV/JSONL loaders, dataset spec strings, tokenization (offline, fast)."""
from __future__ import annotations

import builtins
import json
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from beexbench.data import encode, load_local_dataset, load_task, train_wordpiece
from beexbench.data import local
from beexbench.data.tokenize import CLS_ID, PAD_ID, SEP_ID, choose_max_len
from beexbench.errors import BeexError

GOOD = ["good", "great", "fine", "nice", "superb"]
BAD = ["bad", "awful", "poor", "dull", "weak"]


def _rows(n=60):
    out = []
    for i in range(n):
        lab = "pos" if i % 3 else "neg"
        w = (GOOD if lab == "pos" else BAD)[i % 5]
        out.append({"review": f"a {w} film number {i}", "other": f"side {i}", "stars": lab})
    return out


@pytest.fixture
def csv_file(tmp_path):
    p = tmp_path / "reviews.csv"
    pd.DataFrame(_rows()).to_csv(p, index=False)
    return p


@pytest.fixture
def jsonl_file(tmp_path):
    p = tmp_path / "reviews.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in _rows()))
    return p


@pytest.fixture(scope="module")
def tok():
    texts = [f"the {w} movie was {v} today" for w in GOOD + BAD for v in GOOD + BAD] * 3
    return train_wordpiece(texts, 300)


# --------------------------------------------------------------------------- #
def test_csv_loader(csv_file):
    d = load_local_dataset(csv_file, "review", "stars")
    c = d.card
    assert c.name == "reviews" and c.label_names == ("neg", "pos")  # sorted
    assert c.num_examples == 60 and c.split_sizes == {"train": 48, "val": 6, "test": 6}
    assert c.label_counts == {"neg": 20, "pos": 40}
    assert c.source.startswith("local:") and len(c.sha256) == 64
    assert set(d.test["label"]) == {0, 1}
    assert (d.train["text"].str.contains("|".join(BAD)) == (d.train["label"] == 0)).all()
    again = load_local_dataset(csv_file, "review", "stars")
    pd.testing.assert_frame_equal(d.train, again.train)


def test_jsonl_loader_pair_and_spec(jsonl_file):
    d = load_local_dataset(jsonl_file, "review", "stars", text_b_column="other", name="mine")
    assert d.card.name == "mine" and d.card.text_fields == ("text", "text_b")
    assert list(d.train.columns) == ["text", "text_b", "label"]
    ids, mask, labels = d.encode("train")
    assert ids.shape[0] == 48 and (ids[:, 0] == CLS_ID).all()
    s = load_task(f"jsonl:{jsonl_file}?text=review&label=stars&text_b=other&name=mine")
    pd.testing.assert_frame_equal(d.train, s.train)


def test_spec_string_by_extension(csv_file):
    d = load_task(f"{csv_file}?text=review&label=stars", limit=8)  # 8 + 6 + 6 rows: the 20 a task needs
    assert len(d.train) == 8 and d.card.limit == 8


def test_missing_column_names_it(csv_file):
    with pytest.raises(BeexError) as ei:
        load_local_dataset(csv_file, "body", "stars")
    msg = str(ei.value)
    assert "'body'" in msg and "review" in msg and "stars" in msg
    with pytest.raises(BeexError, match="'rating'"):
        load_task(f"csv:{csv_file}?text=review&label=rating")


def test_unknown_and_empty_labels(tmp_path):
    rows = _rows() + [{"review": f"a weird one {i}", "other": "", "stars": "maybe"} for i in range(10)] + [
        {"review": "unlabelled", "other": "", "stars": ""}]
    p = tmp_path / "r.csv"
    pd.DataFrame(rows).to_csv(p, index=False)
    with pytest.raises(BeexError, match="'maybe'"):
        load_local_dataset(p, "review", "stars", label_names=["neg", "pos"], missing="drop")
    msgs = []

    class Log:
        from contextlib import contextmanager

        @contextmanager
        def task(self, d, total=None):
            yield None

        def log(self, m):
            msgs.append(m)

    d = load_local_dataset(p, "review", "stars", missing="drop", progress=Log())
    assert d.card.label_names == ("maybe", "neg", "pos") and d.card.num_examples == 70
    assert any("without a label" in m for m in msgs)


def test_explicit_label_names_order_and_int_labels(tmp_path):
    p = tmp_path / "r.jsonl"
    p.write_text("".join(json.dumps({"text": f"t {i} " + ("up" if i % 2 else "down"),
                                     "label": i % 2}) + "\n" for i in range(40)))
    d = load_local_dataset(p, label_names=["down", "up"])
    assert d.card.label_names == ("down", "up")
    assert (d.train["text"].str.endswith("up") == (d.train["label"] == 1)).all()
    with pytest.raises(BeexError, match="outside"):
        load_local_dataset(p, label_names=["only"])


def test_regression_local(tmp_path):
    p = tmp_path / "r.csv"
    pd.DataFrame({"text": [f"x {i}" for i in range(50)], "score": np.linspace(0, 1, 50)}).to_csv(p, index=False)
    d = load_local_dataset(p, label_column="score", problem="regression")
    assert d.card.problem == "regression" and d.card.label_names == () and d.card.num_labels == 1
    assert d.train["label"].dtype == np.float64
    _, _, y = d.encode("test")
    assert y.dtype == torch.float32


def test_bad_inputs(tmp_path, monkeypatch):
    with pytest.raises(BeexError, match="does not exist"):
        load_local_dataset(tmp_path / "nope.csv")
    p = tmp_path / "x.parquet"
    p.write_bytes(b"PAR1")
    real_import = builtins.__import__

    def no_engines(name, *a, **k):
        if name in ("pyarrow", "fastparquet"):
            raise ImportError(name)
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_engines)
    with pytest.raises(BeexError, match="pip install pyarrow"):
        load_local_dataset(p)
    monkeypatch.setattr(builtins, "__import__", real_import)
    with pytest.raises(BeexError, match="unknown option"):
        load_task(f"csv:{tmp_path}/a.csv?txt=review")


def test_hf_without_datasets_says_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)
    with pytest.raises(BeexError, match="pip install datasets"):
        load_task("hf:glue/sst2")


def test_hf_spec_parsing(monkeypatch):
    seen = {}
    monkeypatch.setattr(local, "load_hf_dataset", lambda name, config, **kw: seen.update(
        name=name, config=config, **kw) or "sentinel")
    assert local.load_dataset_spec("hf:glue/mrpc") == "sentinel"
    assert (seen["name"], seen["config"]) == ("glue", "mrpc")
    local.load_dataset_spec("hf:stanfordnlp/imdb")
    assert (seen["name"], seen["config"]) == ("stanfordnlp/imdb", None)
    local.load_dataset_spec("hf:nyu-mll/glue:rte?text=sentence1")
    assert (seen["name"], seen["config"], seen["text_column"]) == ("nyu-mll/glue", "rte", "sentence1")


def test_hf_loader_with_fake_datasets(monkeypatch):
    """GLUE-style pair task: unlabelled test -> validation becomes test."""
    import types

    class Split:
        def __init__(self, rows):
            self.rows = rows
            self.features = {"label": types.SimpleNamespace(names=["not_equivalent", "equivalent"],
                                                            dtype="int64")}

        def to_pandas(self):
            return pd.DataFrame(self.rows)

    def rows(n, labelled=True):
        return [{"sentence1": f"a {i} b", "sentence2": f"c {i} " + ("same" if i % 2 else "diff"),
                 "label": (i % 2) if labelled else -1} for i in range(n)]

    fake = types.ModuleType("datasets")
    fake.load_dataset = lambda name, config, revision=None: {
        "train": Split(rows(100)), "validation": Split(rows(20)), "test": Split(rows(30, False))}
    monkeypatch.setitem(sys.modules, "datasets", fake)
    d = load_task("hf:glue/mrpc")
    assert d.card.text_fields == ("text", "text_b") and d.card.label_names == ("not_equivalent", "equivalent")
    assert d.card.split_sizes == {"train": 90, "val": 10, "test": 20}
    assert d.test["text"].tolist() == [f"a {i} b" for i in range(20)]


# --------------------------------------------------------------------------- #
def test_pair_encoding_layout(tok):
    a, b = "the good movie", "was dull"
    ids, mask, types = encode(tok, [a], [b], max_len=12, return_token_type_ids=True)
    ta = tok.encode(a, add_special_tokens=False).ids
    tb = tok.encode(b, add_special_tokens=False).ids
    expect = [CLS_ID] + ta + [SEP_ID] + tb + [SEP_ID]
    expect += [PAD_ID] * (12 - len(expect))
    assert ids.dtype == torch.int64 and mask.dtype == torch.bool
    assert ids[0].tolist() == expect
    n = len(ta) + len(tb) + 3
    assert mask[0].tolist() == [True] * n + [False] * (12 - n)
    assert types[0].tolist()[:n] == [0] * (len(ta) + 2) + [1] * (len(tb) + 1)


def test_single_encoding_truncates_and_pads(tok):
    ids, mask = encode(tok, ["good " * 50, "bad"], max_len=8)
    assert ids.shape == (2, 8) and mask.shape == (2, 8)
    assert ids[0, 0] == CLS_ID and ids[0, -1] == SEP_ID and mask[0].all()
    assert ids[1].tolist()[:3] == [CLS_ID, tok.token_to_id("bad"), SEP_ID]
    assert ids[1, 3:].eq(PAD_ID).all() and not mask[1, 3:].any()
    ids2, _ = encode(tok, ["good " * 50, "bad"], None, 8)  # positional max_len
    assert torch.equal(ids, ids2)
    with pytest.raises(TypeError):
        encode(tok, ["x"])


def test_pair_truncation_keeps_both_parts(tok):
    ids, mask = encode(tok, ["good " * 40], ["bad " * 3], max_len=16)
    row = ids[0].tolist()
    assert row.count(SEP_ID) == 2 and row[-1] == SEP_ID and mask[0].all()
    bad = tok.token_to_id("bad")
    assert row == [CLS_ID] + [tok.token_to_id("good")] * 10 + [SEP_ID] + [bad] * 3 + [SEP_ID]


def test_wordpiece_special_ids_and_determinism(tok):
    assert [tok.token_to_id(t) for t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]")] == [0, 1, 2, 3]
    texts = [f"the {w} movie was {v} today" for w in GOOD + BAD for v in GOOD + BAD] * 3
    assert train_wordpiece(texts, 300).to_str() == tok.to_str()
    assert tok.encode("GOOD Movie").tokens == ["[CLS]", "good", "movie", "[SEP]"]  # lowercased


def test_choose_max_len():
    assert choose_max_len([10] * 100) == 16  # floor
    assert choose_max_len(list(range(1, 101))) == 96
    assert choose_max_len([1000] * 10) == 256
