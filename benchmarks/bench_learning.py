"""Accuracy only, fast: train shared-encoder models on catalog tasks and report what each
learned, without the latency/energy measurement of `beexbench run`.

    python benchmarks/bench_learning.py --models fp32,beexformer --tasks trec --size default
    python benchmarks/bench_learning.py --models fp32 --tasks sms_spam --size paper --json out.jsonl

Each model is built with the suite's model size and training settings (``--size default``:
d_model 64, d_ff 128, 4 epochs; ``paper``: d_model 128, d_ff 256, 8 epochs; both 6 blocks,
4 heads, batch 64), seeded like a `beexbench run` cell, trained on the train split, selected and
calibrated on val. It prints the val score, the test score of every exit, the test score with
the calibrated exit rule, the mean exit block and the share of block MACs the rule runs
(mean exit block / blocks: every block costs the same; embeddings and heads are left out), and
the two reference floors fitted on the same split.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from beexbench.config import load_config  # noqa: E402
from beexbench.data import load_task  # noqa: E402
from beexbench.data.tasks import model_recipe  # noqa: E402
from beexbench.models.exits import simulate  # noqa: E402
from beexbench.runner.models import build_seeded, overrides_for  # noqa: E402
from beexbench.runner.run import prepare_task  # noqa: E402
from beexbench.training.calibrate import all_exit_logits  # noqa: E402
from beexbench.training.metrics import score  # noqa: E402


def run_one(name: str, task: str, splits, spec, cfg, seed: int) -> dict:
    adapter = build_seeded(name, overrides_for(name, cfg, seed, model_recipe(task)), spec, seed)  # as a `beexbench run` cell
    start = time.perf_counter()
    report = adapter.fit(splits["train"], splits["val"])
    seconds = time.perf_counter() - start
    test = splits["test"]
    row = {"model": name, "task": task, "seed": seed, "fit_seconds": round(seconds, 1),
           "epochs_run": report.epochs, "best_epoch": report.best_epoch, "selected_by": report.selected_by,
           "val": round(report.val_accuracy, 4), "metric": report.val_metric}
    module = getattr(adapter, "model", None)
    if module is None or not hasattr(module, "exit_blocks"):  # a reference floor
        row["test_rule"] = round(score(adapter.forward(test.input_ids, test.attention_mask)[0], test.labels), 4)
        return row
    module.eval()
    logits = all_exit_logits(module, test)
    decision = simulate(adapter.rule, logits, module.exit_blocks)
    blocks = len(module.blocks)
    row.update({
        "test_per_exit": [round(score(lg, test.labels), 4) for lg in logits],
        "test_final": round(score(logits[-1], test.labels), 4),
        "test_rule": round(score(decision.logits, test.labels), 4),
        "rule": adapter.rule.to_dict(),
        "mean_exit_block": round(float(decision.exit_block.float().mean()), 3),
        "block_macs_share": round(float(decision.exit_block.float().mean()) / blocks, 3),
    })
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", required=True)
    p.add_argument("--tasks", required=True)
    p.add_argument("--size", choices=("default", "paper"), default="default")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--floors", action="store_true", help="also fit majority and bow-linear")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--set", default="{}", help='JSON overrides for every shared-encoder model, e.g. \'{"train": {"lr": 1e-3}}\'')
    p.add_argument("--json", help="append one JSON line per model here")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    cfg = load_config(a.size)
    for section, values in json.loads(a.set).items():
        cfg.model.setdefault(section, {}).update(values)
    for task in a.tasks.split(","):
        splits, spec = prepare_task(load_task(task))
        names = a.models.split(",") + (["majority", "bow-linear"] if a.floors else [])
        for name in names:
            row = run_one(name, task, splits, spec, cfg, a.seed)
            row["size"] = a.size + (f" {a.set}" if a.set != "{}" else "")
            line = json.dumps(row)
            print(line, flush=True)
            if a.json:
                with open(a.json, "a", encoding="utf-8") as fh:
                    fh.write(line + "\n")


if __name__ == "__main__":
    main()
