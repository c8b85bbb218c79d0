"""Independent timing of the speed ladder (beexbench/report/speed_ladder.py) on trained models
from a model store, to check the report's ratios (within 15%): torch.utils.benchmark for torch,
raw onnxruntime sessions for ORT, the packed engine called directly; batch 1, one thread by
default, at static depth k (the modal exit block of beexformer-packed's deployed rule).
Also the share of the per-block ``fp32-ort`` predict spent outside its ORT sessions, and its
per-block overhead: 1 - (one-call graph latency / per-block latency) at the same (fp32) rule.

    python benchmarks/speed_ladder.py --task rotten_tomatoes [--store ~/.cache/beexbench/models-v3]
        [--samples 256] [--threads 1] [--backbone minilm-l6  (models of the pretrained suite)]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path


def newest(store: Path, task: str, model: str) -> Path:
    found = sorted((store / task / model).glob("*/checkpoint.json"), key=lambda p: p.stat().st_mtime)
    if not found:
        sys.exit(f"no trained '{model}' for {task} in {store}: run the suite first (beexbench run)")
    return found[-1].parent


def per_call_ms(fn, inputs, repeats: int) -> float:
    """Median per-call latency (ms) over ``repeats`` passes through ``inputs`` (after one warm-up pass)."""
    for x in inputs:
        fn(*x)
    times = []
    for _ in range(repeats):
        for x in inputs:
            t = time.perf_counter_ns()
            fn(*x)
            times.append((time.perf_counter_ns() - t) / 1e6)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", default="rotten_tomatoes")
    ap.add_argument("--store", type=Path, default=None)
    ap.add_argument("--samples", type=int, default=256)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--k", type=int, default=None, help="static depth (default: packed's modal exit block)")
    ap.add_argument("--backbone", default=None,
                    help="the models' pretrained backbone (e.g. minilm-l6, the pretrained suite's): inputs encoded with its tokenizer")
    args = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import torch
    import torch.utils.benchmark as tb

    torch.set_num_threads(args.threads)
    from baselines import _onnx_export as ox
    from baselines import _onnx_graph as og
    from beexbench.adapters.registry import get_adapter_class, load_model
    from beexbench.data.tasks import load_task
    from beexbench.models.exits import ExitRule, FractionalEntropy
    from beexbench.runner.run import prepare_task
    from beexbench.settings import cache_root

    store = args.store or (cache_root() / "models-v3")
    data = load_task(args.task)
    tokenizer = None
    if args.backbone:
        from beexbench.backbones.sources import backbone_tokenizer, resolve_backbone

        tokenizer = backbone_tokenizer(resolve_backbone(args.backbone), data.card.max_len)
    splits, _ = prepare_task(data, tokenizer)
    test = splits["test"]
    inputs = []
    for i in range(min(args.samples, len(test))):
        n = int(test.attention_mask[i].sum())
        inputs.append((test.input_ids[i:i + 1, :n], test.attention_mask[i:i + 1, :n]))

    fp32 = load_model(newest(store, args.task, "fp32"))
    packed = load_model(newest(store, args.task, "beexformer-packed"))
    L = len(fp32.module().blocks)
    deployed = packed.exit_rule()
    blocks = torch.cat([packed.predict(*x).exit_block for x in inputs])
    k = args.k or int(torch.bincount(blocks).argmax())
    k = max(k, 2)
    print(f"{args.task}: {len(inputs)} test inputs, batch 1, {args.threads} thread(s); packed's modal exit block {k} "
          f"(share {float((blocks == k).float().mean()):.1%}), L = {L}")

    def static(adapter, depth):
        adapter.rule = ExitRule() if depth == len(adapter.module().blocks) else FractionalEntropy(float("inf"), min_exit=depth)

    # fp32 eager at depth k: torch.utils.benchmark over the inputs, per sample
    enc = fp32.module().eval()

    def eager(ids, mask):
        with torch.no_grad():
            h = enc.embed(ids)
            for b in enc.blocks[:k]:
                h = b(h, mask)
            return enc.head_for(k)(h, mask)

    t = tb.Timer("for x in xs: f(*x)", globals={"xs": inputs, "f": eager}, num_threads=args.threads)
    eager_ms = t.blocked_autorange(min_run_time=3).median * 1e3 / len(inputs)
    eager_med = per_call_ms(eager, inputs, args.repeats)

    # ORT one call at depth k, fp32 and int8 (the same graphs fp32-ort-graph / int8-ort-graph build)
    fp_blocks = ox.export_graphs(enc, fp32.spec.max_len)
    spinning = ox.spinning_from_environment()
    ort_ms = {}
    for name, graphs in (("fp32-ort-graph", fp_blocks[:k]), ("int8-ort-graph", [ox.quantize_graph(g) for g in fp_blocks[:k]])):
        sess = ox.make_session(og.stitch(graphs, list(range(1, k + 1)), og.GraphRule("final")), args.threads, spinning)
        ort_ms[name] = per_call_ms(lambda i, m: sess.run(["logits"], {"ids": i.numpy(), "mask": m.numpy()}), inputs, args.repeats)

    # the packed engine directly, static k, static L, deployed rule
    static(packed, k)
    packed_k = per_call_ms(packed.predict, inputs, args.repeats)
    static(packed, L)
    packed_L = per_call_ms(packed.predict, inputs, args.repeats)
    packed.rule = deployed
    packed_rule = per_call_ms(packed.predict, inputs, args.repeats)

    # the deployed calls the report times (each adapter's predict under the static rule at k), timed
    # here with a plain perf_counter loop instead of beexbench's latency profiler and worker
    from beexbench.models.exits import Static

    deployed_ms = {}
    for name in ("fp32", "fp32-ort-graph", "int8-ort-graph", "beexformer-packed"):
        try:
            adapter = load_model(newest(store, args.task, name))
        except SystemExit as exc:
            print(exc)
            continue
        if hasattr(adapter, "set_rule"):
            adapter.set_rule(Static(k))
        else:
            adapter.rule = Static(k)
        deployed_ms[name] = per_call_ms(adapter.predict, inputs, args.repeats)
    chain = [n for n in ("fp32", "fp32-ort-graph", "int8-ort-graph", "beexformer-packed") if n in deployed_ms]
    print(f"the report's ladder, re-timed (each model's predict with the static rule at k={k}, perf_counter loop):")
    for a, b in zip(chain, chain[1:]):
        print(f"  {a:18s} -> {b:18s} {deployed_ms[a]:8.4f} -> {deployed_ms[b]:8.4f} ms  x{deployed_ms[a] / deployed_ms[b]:.2f}")
    print("the same steps as a hand-deployed k-block network (bare blocks + exit k's head; raw ORT sessions on a "
          "k-block graph; the packed engine):")

    rows = [("fp32 eager -> fp32 ORT one call", eager_med, ort_ms["fp32-ort-graph"]),
            ("fp32 ORT one call -> int8 ORT one call", ort_ms["fp32-ort-graph"], ort_ms["int8-ort-graph"]),
            ("int8 ORT one call -> 1-bit packed", ort_ms["int8-ort-graph"], packed_k),
            (f"packed static L={L} -> + early exit", packed_L, packed_rule)]
    print(f"fp32 eager at k={k}: {eager_med:.4f} ms median per call ({eager_ms:.4f} ms mean, torch.utils.benchmark)")
    print(f"{'step':44s} {'before ms':>10s} {'after ms':>10s} {'x faster':>9s}")
    for name, a, b in rows:
        print(f"{name:44s} {a:10.4f} {b:10.4f} {a / b:9.2f}")

    # the per-block fp32-ort: time inside its sessions vs the whole predict, at fp32's rule
    try:
        per_block = load_model(newest(store, args.task, "fp32-ort"))
    except SystemExit as exc:
        print(exc)
        return
    sessions = per_block.sessions()
    inside = [0]

    class Timed:
        def __init__(self, s):
            self.s = s

        def run(self, *a, **kw):
            t0 = time.perf_counter_ns()
            try:
                return self.s.run(*a, **kw)
            finally:
                inside[0] += time.perf_counter_ns() - t0

    per_block._sessions = [Timed(s) for s in sessions]
    per_block.sessions = lambda: per_block._sessions
    per_block_ms = per_call_ms(per_block.predict, inputs, 1)
    inside[0] = 0
    t0 = time.perf_counter_ns()
    for x in inputs * args.repeats:
        per_block.predict(*x)
    total = time.perf_counter_ns() - t0
    graph = get_adapter_class("fp32-ort-graph").derive(fp32, None)
    graph.set_rule(per_block.rule)
    one_call = per_call_ms(graph.predict, inputs, args.repeats)
    print(f"fp32-ort (one session per block) at fp32's rule: {per_block_ms:.4f} ms median; outside ORT sessions "
          f"{1 - inside[0] / total:.1%} of its predict time")
    print(f"fp32-ort-graph (one call) at the same rule: {one_call:.4f} ms; per-block overhead = 1 - one-call/per-block "
          f"= {1 - one_call / per_block_ms:.1%}")


if __name__ == "__main__":
    main()
