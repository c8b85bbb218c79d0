"""The packed engine's batch-1 latency at each static depth k = 1..L on a trained model's test inputs (one
process, 1 thread; median per call over the inputs, repeated): where a block costs more than its neighbours.

    python benchmarks/packed_depths.py --task trec --store /tmp/p28/models [--backbone minilm-l6] [--samples 128]
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", default="trec")
    ap.add_argument("--store", type=Path, required=True, help="a model store (models-v3 layout) holding beexformer-packed")
    ap.add_argument("--backbone", default=None, help="the model's pretrained backbone, for its tokenizer")
    ap.add_argument("--samples", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    from beexbench.adapters.registry import load_model
    from beexbench.data.tasks import load_task
    from beexbench.models.exits import Static
    from beexbench.runner.run import prepare_task

    data = load_task(args.task)
    tokenizer = None
    if args.backbone:
        from beexbench.backbones.sources import backbone_tokenizer, resolve_backbone

        tokenizer = backbone_tokenizer(resolve_backbone(args.backbone), data.card.max_len)
    test = prepare_task(data, tokenizer)[0]["test"]
    inputs = []
    for i in range(min(args.samples, len(test))):
        n = int(test.attention_mask[i].sum())
        inputs.append((test.input_ids[i:i + 1, :n], test.attention_mask[i:i + 1, :n]))
    found = sorted((args.store / args.task / "beexformer-packed").glob("*/checkpoint.json"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise SystemExit(f"no trained beexformer-packed for {args.task} in {args.store}")
    model = load_model(found[-1].parent)
    blocks = len(model.module().blocks)
    print(f"{args.task}: {len(inputs)} inputs, mean {sum(x[0].shape[1] for x in inputs) / len(inputs):.1f} tokens, 1 thread")
    for _ in range(args.repeats):
        row = []
        for k in range(1, blocks + 1):
            model.rule = Static(k)
            for x in inputs:
                model.predict(*x)
            times = []
            for _ in range(3):
                for x in inputs:
                    t = time.perf_counter_ns()
                    model.predict(*x)
                    times.append((time.perf_counter_ns() - t) / 1e6)
            row.append(statistics.median(times))
        print("ms at k = 1.." + str(blocks) + ": " + ", ".join(f"{v:.4f}" for v in row))


if __name__ == "__main__":
    main()
