"""Models trained from other trained models (issue 17): ``model.backbone.init_from`` (start from
another model's trained network, as BiBERT / BiT binarize a fine-tuned fp32) and
``model.distill`` (learn from a teacher's logits and hidden states)."""
from __future__ import annotations

import json

import pytest
import torch
from torch.nn import functional as F

from beexbench.adapters.base import TaskSpec
from beexbench.adapters.registry import create_model, load_model
from beexbench.config import load_config
from beexbench.errors import BeexError
from beexbench.runner import run_suite
from beexbench.runner.models import overrides_for
from beexbench.training.batches import Batch
from beexbench.training.distill import Distiller
from conftest import write_tiny_suite

SIZE = {"encoder": {"d_model": 16, "n_heads": 2, "n_blocks": 3, "d_ff": 16}}
TASK = TaskSpec("chain", 3, vocab_size=40, max_len=12)


def _model(name, seed, **sections):
    return create_model(name, TASK, {**SIZE, **sections}, seed=seed)


def _batch(n=6, length=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, TASK.vocab_size, (n, length), generator=g)
    mask = torch.ones(n, length, dtype=torch.bool)
    mask[: n // 2, length // 2:] = 0  # half the rows padded
    return Batch(ids * mask, mask, torch.randint(0, TASK.num_labels, (n,), generator=g))


def test_init_from_copies_the_trained_network_where_it_matches():
    fp32 = _model("fp32", seed=1)
    student = _model("beexformer", seed=2, backbone={"init_from": "fp32"})
    before = {k: v.clone() for k, v in student.model.state_dict().items()}
    student.take_trained({"init": fp32})
    theirs, mine = fp32.model.state_dict(), student.model.state_dict()
    shared = [k for k in mine if k in theirs and mine[k].shape == theirs[k].shape]
    assert shared and all(torch.equal(mine[k], theirs[k]) for k in shared)
    # what only the binary model has (the learnable activation shifts) keeps its own initialisation
    own = [k for k in mine if k not in theirs]
    assert own and all(torch.equal(mine[k], before[k]) for k in own)
    assert student.backbone["init_from"]["filled"] == len(shared)
    # the float network now computes what the binarized one starts from: not the seeded init
    assert not torch.equal(mine["blocks.0.attn.q.weight"], before["blocks.0.attn.q.weight"])


def test_init_from_maps_exit_heads_by_the_block_they_follow():
    fp32 = _model("fp32", seed=1)  # a head after every block
    bibert = _model("bibert-style", seed=2, backbone={"init_from": "fp32"})  # one head, after the last block
    bibert.take_trained({"init": fp32})
    last = fp32.model.head_for(3).state_dict()
    assert all(torch.equal(v, last[k]) for k, v in bibert.model.heads[0].state_dict().items())
    # and an FFN of another kind is not filled from the source's (gelu vs slfn)
    assert not torch.equal(bibert.model.blocks[0].ffn.w1.weight[:16, :16], fp32.model.blocks[0].ffn.w1.weight[:16, :16])


def test_init_from_refuses_a_network_of_another_size():
    fp32 = create_model("fp32", TASK, {"encoder": {"d_model": 32, "n_heads": 2, "n_blocks": 3, "d_ff": 16}}, seed=1)
    student = _model("beexformer", seed=2, backbone={"init_from": "fp32"})
    with pytest.raises(BeexError, match="differ in size"):
        student.take_trained({"init": fp32})


def test_the_logit_term_is_the_temperature_scaled_kl_divergence():
    teacher, student = _model("fp32", seed=1), _model("beexformer", seed=2)
    batch = _batch()
    t = 2.0
    with Distiller(teacher.model, student.model, logits=1.0, hidden=0.0, temperature=t, regression=False) as d:
        student.model.train()
        out = student.model(batch.input_ids, batch.attention_mask)
        got = d(out, batch)
    teacher.model.eval()
    with torch.no_grad():
        ref_logits = teacher.model(batch.input_ids, batch.attention_mask)
    # by hand: sum_c p_t (log p_t - log p_s), mean over rows, times T^2, mean over the exits (same depth)
    want = []
    for s, r in zip(out, ref_logits):
        p_t = torch.softmax(r / t, -1)
        want.append((p_t * (torch.log(p_t) - torch.log_softmax(s / t, -1))).sum(-1).mean() * t * t)
    assert torch.allclose(got, torch.stack(want).mean(), atol=1e-6)
    assert got.requires_grad and all(p.grad is None for p in teacher.model.parameters())


def test_a_student_that_equals_its_teacher_has_nothing_to_learn():
    teacher = _model("fp32", seed=1)
    student = _model("fp32", seed=1)
    student.model.load_state_dict(teacher.model.state_dict())
    student.model.eval()  # no dropout, so both compute the same function
    batch = _batch()
    with Distiller(teacher.model, student.model, logits=1.0, hidden=1.0, temperature=1.0, regression=False) as d:
        student.model.blocks.train()  # the hooks keep the student's training forwards only
        student.model.emb_drop.p = 0.0
        for block in student.model.blocks:
            for m in block.modules():
                if isinstance(m, torch.nn.Dropout):
                    m.p = 0.0
        loss = d(student.model(batch.input_ids, batch.attention_mask), batch)
    assert float(loss) == pytest.approx(0.0, abs=1e-6)


def test_hidden_states_are_compared_on_real_tokens_only_and_hooks_go_away():
    teacher, student = _model("fp32", seed=1), _model("beexformer", seed=2)
    batch = _batch()
    captured = {}
    with Distiller(teacher.model, student.model, logits=0.0, hidden=1.0, temperature=1.0, regression=False) as d:
        student.model.eval()
        with torch.no_grad():  # an evaluation forward (epoch selection) is not distilled
            student.model(batch.input_ids, batch.attention_mask)
        assert d._hidden["student"] == []
        student.model.train()
        out = student.model(batch.input_ids, batch.attention_mask)
        captured["student"] = list(d._hidden["student"])
        got = d(out, batch)
    assert len(captured["student"]) == 3
    hooks = [b._forward_hooks for m in (teacher.model, student.model) for b in m.blocks]
    assert all(len(h) == 0 for h in hooks)
    teacher.model.eval()
    with torch.no_grad():
        h = teacher.model.embed(batch.input_ids)
        ref = []
        for block in teacher.model.blocks:
            h = block(h, batch.attention_mask)
            ref.append(h)
    keep = batch.attention_mask.unsqueeze(-1).float()
    want = torch.stack([(((s - r) * keep) ** 2).sum() / (keep.sum() * 16) for s, r in zip(captured["student"], ref)]).mean()
    assert torch.allclose(got, want, atol=1e-6)


def test_hidden_distillation_needs_the_same_depth_and_width():
    teacher = create_model("fp32", TASK, {"encoder": {"d_model": 16, "n_heads": 2, "n_blocks": 2, "d_ff": 16}}, seed=1)
    with pytest.raises(BeexError, match="as deep and wide"):
        Distiller(teacher.model, _model("beexformer", seed=2).model, logits=1.0, hidden=1.0, temperature=1.0,
                  regression=False)


def test_a_model_that_distils_refuses_to_train_without_its_teacher():
    from beexbench.training.batches import EncodedSplit

    student = _model("beexformer-kd", seed=2)
    b = _batch()
    split = EncodedSplit(b.input_ids, b.attention_mask, b.labels)
    with pytest.raises(BeexError, match="teacher"):
        student.fit(split, split)


def test_task_recipes_apply_to_scratch_models_only(tiny_suite):
    cfg = load_config(config_file=tiny_suite)
    recipe = {"encoder": {"token_dropout": 0.4}}
    assert overrides_for("fp32", cfg, 0, recipe)["encoder"]["token_dropout"] == 0.4
    cfg.model_overrides["fp32"] = {"backbone": {"name": "minilm-l6"}}
    assert "token_dropout" not in overrides_for("fp32", cfg, 0, recipe)["encoder"]


def _suite(tmp_path, monkeypatch, extra: str):
    monkeypatch.setenv("BEEXBENCH_CACHE", str(tmp_path / "cache"))
    suite = write_tiny_suite(tmp_path, models=("beexformer", "beexformer-kd"))
    suite.write_text(suite.read_text() + extra)
    return load_config(config_file=suite)


def test_a_run_trains_the_source_first_once_and_records_how_each_model_was_trained(tmp_path, monkeypatch):
    cfg = _suite(tmp_path, monkeypatch, '\n[model_overrides.beexformer.backbone]\ninit_from = "fp32"\n')
    summary = run_suite(cfg)
    assert not summary.failed, summary.failed
    records = {p.name.split("__")[0]: json.loads(p.read_text()) for p in summary.run_dir.glob("cells/*.json")}
    assert set(records) == {"beexformer", "beexformer-kd"}  # fp32 was trained for them, not measured
    fp32_folders = list((tmp_path / "models").glob("*/fp32/*"))
    assert len(fp32_folders) == 1  # one fp32, shared by the student that starts from it and the one it teaches
    fp32 = load_model(fp32_folders[0])
    start = load_model(records["beexformer"]["model"]["checkpoint"])
    assert start.backbone["init_from"]["model"] == "fp32"
    assert "from the trained fp32" in records["beexformer"]["model"]["training_note"]
    assert "distilled from fp32" in records["beexformer-kd"]["model"]["training_note"]
    assert records["beexformer-kd"]["model"]["config"]["distill"]["teacher"] == "fp32"
    # a student's checkpoint folder names its source's: another fp32 would be another student
    ident = (tmp_path / "models").glob("*/beexformer/*")
    assert len(list(ident)) == 1 and fp32.spec == start.spec


def test_the_checkpoint_of_a_student_changes_with_its_teacher(tmp_path, monkeypatch):
    from beexbench.runner.models import _checkpoint_plan

    cfg = _suite(tmp_path, monkeypatch, "")
    first, inputs = _checkpoint_plan("beexformer-kd", TASK, cfg, 0, None, ())
    assert inputs == {"teacher": "fp32"}
    cfg.model_overrides["fp32"] = {"train": {"lr": 5e-4}}
    second, _ = _checkpoint_plan("beexformer-kd", TASK, cfg, 0, None, ())
    plain, _ = _checkpoint_plan("beexformer", TASK, cfg, 0, None, ())
    assert first != second
    assert plain == _checkpoint_plan("beexformer", TASK, cfg, 0, None, ())[0]


def test_a_model_trained_from_itself_is_a_one_line_error(tmp_path, monkeypatch):
    cfg = _suite(tmp_path, monkeypatch, '\n[model_overrides.fp32.distill]\nteacher = "beexformer-kd"\n')
    summary = run_suite(cfg)
    assert {k.model for k, _ in summary.failed} == {"beexformer-kd"}
    error = dict((k.model, e) for k, e in summary.failed)["beexformer-kd"]
    assert "beexformer-kd -> fp32 -> beexformer-kd" in error and "\n" not in error


def test_the_kl_term_matches_torch_for_regression_as_mse():
    teacher, student = (create_model(n, TaskSpec("r", 1, vocab_size=40, max_len=12, problem="regression"),
                                     SIZE, seed=s) for n, s in (("fp32", 1), ("beexformer", 2)))
    batch = _batch()
    with Distiller(teacher.model, student.model, logits=2.0, hidden=0.0, temperature=3.0, regression=True) as d:
        out = student.model(batch.input_ids, batch.attention_mask)
        got = d(out, batch)
    with torch.no_grad():
        ref = teacher.model(batch.input_ids, batch.attention_mask)
    want = 2.0 * torch.stack([F.mse_loss(s, r) for s, r in zip(out, ref)]).mean()
    assert torch.allclose(got, want, atol=1e-6)


def test_the_pretrained_suite_is_valid_on_any_bert_backbone(tmp_path):
    """Every model setting of the built-in pretrained suite checks out (the backbone swapped for a
    tiny local BERT, so no download: the suite's own minilm-l6 is checked by the network test)."""
    pytest.importorskip("transformers")
    from beexbench.validate import validate
    from test_backbone_run import tiny_bert

    bert, _ = tiny_bert(tmp_path / "bert")
    cfg = load_config("pretrained")
    assert cfg.model["backbone"]["name"] == "minilm-l6"
    cfg.model["backbone"]["name"] = f"hf:{bert}"
    assert validate(cfg) == []
    starts = {m: (cfg.model_overrides.get(m, {}).get("backbone") or {}).get("init_from") for m in cfg.models}
    assert {m for m, s in starts.items() if s == "fp32"} == {"beexformer", "beexformer-kd", "beexformer-slfn-ffn",
                                                             "bibert-style", "bit-style"}


def test_deployments_state_how_their_source_network_was_trained():
    plain = {n: _model(n, seed=0).training_note for n in ("fp32-ort", "beexformer-packed", "beexformer-kd")}
    assert plain["fp32-ort"].endswith("trained from scratch as fp32")
    assert plain["beexformer-packed"].startswith("trained from scratch")
    assert "distilled from fp32 (logits and hidden states, T=1)" in plain["beexformer-kd"]
    chained = {n: _model(n, seed=0, backbone={"init_from": "fp32"}).training_note for n in ("fp32-ort", "beexformer-packed")}
    assert chained["fp32-ort"].startswith("the trained fp32 network exported to ONNX") and "from the trained fp32" in chained["fp32-ort"]
    assert chained["beexformer-packed"].startswith("fine-tuned on the task's train split from the trained fp32")
