"""Issue 28, size: every model's size counts its tokenizer (bits and disk), the fp32 deployment with
int8 token rows, and the report's size ladder (one factor a step, two labelled ratios)."""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import torch
from safetensors import safe_open

from beexbench.adapters.base import TaskSpec
from beexbench.adapters.checkpoint import WEIGHTS
from beexbench.adapters.registry import create_model, get_adapter_class, load_model
from beexbench.errors import BeexError
from beexbench.profilers.size import keep_tokenizer, measure_size, tokenizer_files
from beexbench.report.size_ladder import ENCODER, WHOLE, size_ladder
from beexbench.training.batches import EncodedSplit

pytestmark = pytest.mark.usefixtures("one_thread")
TINY = {"encoder": {"d_model": 16, "n_heads": 2, "n_blocks": 3, "d_ff": 32}, "train": {"epochs": 1, "batch_size": 16}}


def tokenizer(texts=("a good film", "a dull plot", "the cast was lovely", "really boring story")):
    from beexbench.data.tokenize import train_wordpiece

    return train_wordpiece(list(texts) * 3, vocab_size=60, min_frequency=1)


# -- the tokenizer is counted ------------------------------------------------------------------
def test_tokenizer_bytes_are_the_files_size_on_disk(tmp_path, monkeypatch):
    monkeypatch.setenv("BEEXBENCH_CACHE", str(tmp_path / "cache"))
    tok = tokenizer()
    path = keep_tokenizer(tok)
    spec = TaskSpec("t", 2, vocab_size=tok.get_vocab_size(), max_len=12, tokenizer_sha256=path.stem)
    adapter = create_model("fp32", spec, TINY)
    adapter.save(tmp_path / "ckpt")
    files = adapter.deployable_files(tmp_path / "ckpt")
    size = measure_size(adapter, files)
    on_disk = os.stat(path).st_size  # an independent measure: the file system's
    assert size.tokenizer_bytes == on_disk > 100
    assert size.tokenizer_files == (str(path),)
    assert size.deployable_bytes == sum(os.stat(f).st_size for f in files) + on_disk
    assert size.deployable_bytes == size.disk_bytes + on_disk
    assert size.total_bits_with_tokenizer == size.total_bits + 8 * on_disk
    assert any("tokenizer.json" in n for n in size.notes)


def test_the_runner_keeps_the_tasks_tokenizer_where_size_finds_it(tmp_path, monkeypatch):
    from beexbench.data import load_task
    from beexbench.runner.run import prepare_task
    from conftest import write_tiny_csv

    monkeypatch.setenv("BEEXBENCH_CACHE", str(tmp_path / "cache"))
    data = load_task(f"csv:{write_tiny_csv(tmp_path / 't.csv')}?text=text&label=label&name=tiny")
    _, spec = prepare_task(data)
    paths, _ = tokenizer_files(SimpleNamespace(config={}, spec=spec))
    assert len(paths) == 1 and paths[0].read_text(encoding="utf-8") == data.tokenizer.to_str()


def test_a_named_tokenizer_that_is_missing_is_an_error_and_an_unnamed_one_is_not_a_zero(tmp_path, monkeypatch):
    monkeypatch.setenv("BEEXBENCH_CACHE", str(tmp_path / "cache"))
    adapter = create_model("fp32", TaskSpec("t", 2, vocab_size=30, max_len=8, tokenizer_sha256="ab" * 32), TINY)
    with pytest.raises(BeexError, match="tokenizer of task 't'"):
        measure_size(adapter)
    bare = measure_size(create_model("fp32", TaskSpec("t", 2, vocab_size=30, max_len=8), TINY))
    assert bare.tokenizer_bytes is None and bare.deployable_bytes is None and bare.total_bits_with_tokenizer is None
    assert any("tokenizer not counted" in n for n in bare.notes)


def test_a_backbone_models_tokenizer_is_the_backbones_vocabulary(tmp_path):
    pytest.importorskip("transformers")
    from test_backbone_run import tiny_bert

    bert, _ = tiny_bert(tmp_path / "bert")
    (bert / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": True}))
    paths, note = tokenizer_files(SimpleNamespace(config={"backbone": {"name": f"hf:{bert}"}}, spec=None))
    assert sorted(p.name for p in paths) == ["tokenizer_config.json", "vocab.txt"] and "vocab.txt" in note
    assert sum(os.stat(p).st_size for p in paths) == os.stat(bert / "vocab.txt").st_size + os.stat(bert / "tokenizer_config.json").st_size


# -- fp32 with int8 token rows -------------------------------------------------------------------
def task(n: int, seed: int, vocab: int = 40, length: int = 10) -> EncodedSplit:
    """Label 1 when token 7 appears: learnable in a few epochs."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(8, vocab, (n, length), generator=g)
    labels = torch.randint(0, 2, (n,), generator=g)
    where = torch.randint(1, length, (n,), generator=g)
    ids[labels == 1, where[labels == 1]] = 7
    ids[:, 0] = 2
    return EncodedSplit(ids, torch.ones(n, length, dtype=torch.bool), labels)


def accuracy(adapter, split: EncodedSplit) -> float:
    with torch.no_grad():
        d = adapter.predict(split.input_ids, split.attention_mask)
    return float((d.logits.argmax(-1) == split.labels).float().mean())


@pytest.fixture(scope="module")
def trained():
    torch.manual_seed(0)
    spec = TaskSpec("seven", 2, vocab_size=40, max_len=10)
    fp32 = create_model("fp32", spec, {**TINY, "train": {"epochs": 8, "batch_size": 32, "lr": 3e-3}}, seed=0)
    train, val, test = task(512, 1), task(128, 2), task(256, 3)
    fp32.fit(train, val)
    rows = get_adapter_class("fp32-int8-rows").derive(fp32, val)
    return fp32, rows, test


def test_int8_rows_are_the_trained_fp32_network_with_its_table_rounded(trained):
    fp32, rows, test = trained
    assert rows.source is fp32 and type(rows).derived_from == "fp32"
    table = fp32.module().tok.weight.detach()
    decoded = rows.module().tok.table()
    scale = table.abs().amax(-1) / 127
    assert torch.all((decoded - table).abs() <= scale[:, None] * 0.51 + 1e-3)  # rounding, at most half a step
    assert not torch.equal(decoded, table)
    acc_fp32, acc_rows = accuracy(fp32, test), accuracy(rows, test)
    assert acc_fp32 > 0.8, acc_fp32  # the task was learned
    assert abs(acc_rows - acc_fp32) <= 0.03, (acc_fp32, acc_rows)


def test_int8_rows_round_trip_with_identical_predictions_and_int8_rows_on_disk(trained, tmp_path):
    _, rows, test = trained
    rows.save(tmp_path)
    loaded = load_model(tmp_path)
    assert type(loaded).name == "fp32-int8-rows" and loaded.source is None
    a = rows.predict(test.input_ids, test.attention_mask)
    b = loaded.predict(test.input_ids, test.attention_mask)
    assert torch.equal(a.logits, b.logits) and torch.equal(a.exit_block, b.exit_block)
    with safe_open(str(tmp_path / WEIGHTS), "pt") as f:
        keys = set(f.keys())
        codes, scale = f.get_tensor("tok.codes"), f.get_tensor("tok.scale")
    assert "tok.weight" not in keys
    assert codes.dtype == torch.int8 and codes.shape == (40, 16) and scale.dtype == torch.float16 and scale.shape == (40,)
    # the file is smaller than fp32's by about 3 bytes per table element (4 -> 1, plus 2 per row)
    fp32_dir = tmp_path / "fp32"
    trained[0].save(fp32_dir)
    saved = os.stat(fp32_dir / WEIGHTS).st_size - os.stat(tmp_path / WEIGHTS).st_size
    assert abs(saved - (40 * 16 * 3 - 40 * 2)) < 400, saved


def test_int8_rows_declare_8_bit_rows_and_size_counts_them(trained):
    fp32, rows, _ = trained
    f, r = measure_size(fp32), measure_size(rows)
    assert f.bits["embeddings"] - r.bits["embeddings"] == 40 * 16 * 24 - 40 * 16  # 32 -> 8 bits, + a 16-bit scale per row
    assert f.total_bits_without_embeddings == r.total_bits_without_embeddings  # the encoder is the same


def test_int8_rows_refuse_a_network_that_is_not_fp32():
    with pytest.raises(BeexError, match="must be fp32"):
        create_model("fp32-int8-rows", TaskSpec("t", 2, vocab_size=30, max_len=8), {"encoder": {"weight_bits": 1}})


# -- the ladder ----------------------------------------------------------------------------------
def ladder_frame(models) -> pd.DataFrame:
    # fp32 / int8-rows / packed / A5: whole artifact (bytes) and encoder only (bits), hand-made
    sizes = {"fp32": (400_000, 800_000), "fp32-int8-rows": (160_000, 800_000),
             "beexformer-packed": (80_000, 40_000), "beexformer-a5-packed": (50_000, 40_000)}
    acc = {"fp32": 0.80, "fp32-int8-rows": 0.79, "beexformer-packed": 0.77, "beexformer-a5-packed": 0.70}
    rows = [{"task": "t", "target_label": "cpu", "model": m, "label": m, "accuracy": acc[m], "accuracy_std": math.nan,
             "accuracy_lo": acc[m] - 0.02, "accuracy_hi": acc[m] + 0.02, "accuracy_undefined": "", "n_seeds": 1,
             "metric": "accuracy", "deployable_bytes": sizes[m][0], "size_bits_no_emb": sizes[m][1],
             "tokenizer_bytes": 20_000} for m in models]
    rows.append({**rows[0], "model": "bow-linear", "label": "bow-linear"})  # not a rung
    return pd.DataFrame(rows)


def test_ladder_ratios_are_from_over_to_on_both_labelled_measures():
    t = size_ladder(ladder_frame(["fp32", "fp32-int8-rows", "beexformer-packed", "beexformer-a5-packed"]))
    raw = t.raw.set_index(["from", "to"])
    assert list(raw.index) == [("fp32", "fp32-int8-rows"), ("fp32-int8-rows", "beexformer-packed"),
                               ("beexformer-packed", "beexformer-a5-packed"), ("fp32", "beexformer-packed"),
                               ("fp32", "beexformer-a5-packed")]
    whole, enc = "x_smaller_whole_artifact_incl_tokenizer", "x_smaller_encoder_only"
    assert raw.loc[("fp32", "fp32-int8-rows"), whole] == pytest.approx(2.5)
    assert raw.loc[("fp32", "fp32-int8-rows"), enc] == pytest.approx(1.0)  # the step changes only the table
    assert raw.loc[("fp32-int8-rows", "beexformer-packed"), whole] == pytest.approx(2.0)
    assert raw.loc[("fp32-int8-rows", "beexformer-packed"), enc] == pytest.approx(20.0)
    assert raw.loc[("beexformer-packed", "beexformer-a5-packed"), whole] == pytest.approx(1.6)
    assert raw.loc[("fp32", "beexformer-a5-packed"), whole] == pytest.approx(8.0)
    assert raw.loc[("fp32", "beexformer-packed"), enc] == pytest.approx(20.0)
    assert raw.loc[("beexformer-packed", "beexformer-a5-packed"), "accuracy_to"] == pytest.approx(0.70)
    assert any(WHOLE in c for c in t.columns) and any(ENCODER in c for c in t.columns)
    first = t.rows[0]
    assert first[0] == "fp32 → fp32-int8-rows" and "int8" in first[1] and first[3] == "2.50" and first[5] == "1.00"
    assert first[6].startswith("80.0") and "79.0" in first[6]
    paper = [n for n in t.notes if n.startswith("paper")]
    assert "20.0x encoder only, 5.0x whole artifact incl. tokenizer" in paper[0]
    assert "12.5% of its whole artifact" not in " ".join(t.notes) and "25% of its whole artifact" in " ".join(t.notes)


def test_a_missing_rung_makes_a_step_name_every_factor_it_spans():
    t = size_ladder(ladder_frame(["fp32", "beexformer-packed"]))
    assert len(t.rows) == 1 and t.rows[0][1].startswith("2 factors")
    assert "int8" in t.rows[0][1] and "1 bit" in t.rows[0][1]
    assert t.raw["x_smaller_whole_artifact_incl_tokenizer"].iloc[0] == pytest.approx(5.0)
    assert size_ladder(ladder_frame(["fp32"])) is None


def test_steps_never_cross_settings():
    a = ladder_frame(["fp32", "fp32-int8-rows"]).assign(setting="default")
    b = ladder_frame(["beexformer-packed"]).assign(setting="big")
    b["label"] = b["model"] + " (big)"
    t = size_ladder(pd.concat([a, b], ignore_index=True))
    assert [r[0] for r in t.rows] == ["fp32 → fp32-int8-rows"] and set(t.raw["setting"]) == {"default"}


def test_records_without_tokenizer_sizes_show_a_dash_not_a_ratio():
    g = ladder_frame(["fp32", "fp32-int8-rows"])
    g["deployable_bytes"] = math.nan
    t = size_ladder(g)
    assert t.rows[0][3] == "—" and t.rows[0][5] == "1.00"


# -- end to end: a run's records and its report ----------------------------------------------------
def test_a_run_records_every_models_tokenizer_and_the_report_shows_the_ladder(tmp_path, monkeypatch):
    from beexbench.config import load_config
    from beexbench.report.build import build_report
    from beexbench.runner import run_suite
    from conftest import write_tiny_suite

    monkeypatch.setenv("BEEXBENCH_CACHE", str(tmp_path / "cache"))
    suite = write_tiny_suite(tmp_path, models=("fp32", "fp32-int8-rows"), floors=True)
    summary = run_suite(load_config(config_file=suite))
    assert not summary.failed, summary.failed
    records = [json.loads(p.read_text()) for p in summary.run_dir.glob("cells/*.json")]
    assert {r["key"]["model"] for r in records} == {"fp32", "fp32-int8-rows", "majority", "bow-linear"}
    for r in records:
        size = r["metrics"]["size"]
        (tok,) = size["tokenizer_files"]
        assert size["tokenizer_bytes"] == os.stat(tok).st_size > 0, r["key"]["model"]
        assert size["deployable_bytes"] == sum(os.stat(f).st_size for f in size["disk_files"]) + size["tokenizer_bytes"]
    out = build_report(summary.run_dir, tmp_path / "report.html", tables_dir=tmp_path / "tables")
    html = out.read_text(encoding="utf-8")
    assert 'data-kind="size_ladder"' in html and "fp32 (tiny) → fp32-int8-rows (tiny)" in html
    assert "Size ladder" in (tmp_path / "tables" / "tables.md").read_text(encoding="utf-8")
