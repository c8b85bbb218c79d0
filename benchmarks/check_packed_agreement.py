"""Does the packed engine decide what the trained model decides? On a task's whole test split.

    python benchmarks/check_packed_agreement.py --results results/<run-id> --task trec [--suite pretrained]

Takes the run's trained ``beexformer`` checkpoint for the task, derives the packed deployment with
each token-row format (the trained fp32 table; int8 rows; int4 rows) exactly as the runner does, and
compares each with the trained model's own early-exit inference on the test split: the share of the
same predictions and of the same exit blocks, the largest logit difference, both accuracies. The
test split is encoded as the run encoded it (the suite's backbone tokenizer for a backbone model).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from beexbench.adapters.registry import get_adapter_class, load_model  # noqa: E402
from beexbench.config import load_config  # noqa: E402
from beexbench.data import load_task  # noqa: E402
from beexbench.runner.run import TaskEncodings  # noqa: E402

DEPLOYMENTS = ("beexformer-packed-fp32emb", "beexformer-packed", "beexformer-packed-int4")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", required=True, help="a run folder holding a beexformer cell for the task")
    ap.add_argument("--task", required=True)
    ap.add_argument("--suite", default="pretrained", help="the suite the run used (its tokenizer settings)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    cells = sorted(Path(args.results).glob(f"cells/beexformer__{args.task}__*.json"))
    if not cells:
        sys.exit(f"no beexformer cell for {args.task} in {args.results}")
    trained = load_model(json.loads(cells[0].read_text())["model"]["checkpoint"])
    splits, _ = TaskEncodings(args.task, load_task(args.task), load_config(args.suite)).for_model("beexformer", 0)
    test = splits["test"]
    ref = trained.predict(test.input_ids, test.attention_mask)
    ref_pred = ref.logits.argmax(-1)
    print(f"trained beexformer on {args.task}: accuracy {(ref_pred == test.labels).float().mean():.4f} (n = {len(test)})")
    for name in DEPLOYMENTS:
        packed = get_adapter_class(name).derive(trained, splits["val"], None)  # keeps the calibrated rule
        got = packed.predict(test.input_ids, test.attention_mask)
        pred = got.logits.argmax(-1)
        print(f"{name:27s} same predictions {(pred == ref_pred).float().mean():.4f}  same exits "
              f"{(got.exit_block == ref.exit_block).float().mean():.4f}  max |logit diff| "
              f"{(got.logits - ref.logits).abs().max():.2e}  accuracy {(pred == test.labels).float().mean():.4f}")


if __name__ == "__main__":
    main()
