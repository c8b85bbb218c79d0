"""The packed-bit BEExformer engine beside the simulated model and the fp32 counterpart.

    BEEXBENCH_CACHE=/tmp/bbcache python benchmarks/bench_packed.py --check      # every test sample
    BEEXBENCH_CACHE=/tmp/bbcache python benchmarks/bench_packed.py              # speed
    BEEXBENCH_CACHE=/tmp/bbcache python benchmarks/bench_packed.py --profile    # where time goes

Models come from the model store of the suite (default: ``default``): the trained
``beexformer`` and ``fp32`` checkpoints are loaded (trained first if missing, as
``beexbench run`` would) and ``beexformer-packed`` is derived from the beexformer.

``--check``: for every test sample, the packed engine's prediction and exit block against
the float beexformer's (eval mode, its calibrated exit rule), at batch 1 (each sample
trimmed to its length, as the latency profiler runs it) and batched (256, padded, rows
leave the batch as they exit); the maximum logit difference. Exit status 1 on a mismatch.

Speed, in one process: (a) per layer, packed ``binary_linear`` against fp32 ``nn.Linear``
at the model's shapes (M = the mean test length) and at 128x512x512 (bench_kernels.py);
(b) end to end, batch-1 ``predict`` on real test sentences of packed vs simulated
beexformer vs fp32, at each thread count. The models are timed in alternating rounds so
background load hits all alike; the figure is the median over rounds of the mean time
per sample. On a shared machine, read the load average printed with the figures.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import beexbench.kernels as kernels  # noqa: E402
from beexbench.adapters.registry import get_adapter_class  # noqa: E402
from beexbench.config import load_config  # noqa: E402
from beexbench.data.tasks import load_task  # noqa: E402
from beexbench.engine import _native  # noqa: E402
from beexbench.runner.models import obtain_model  # noqa: E402
from beexbench.runner.run import prepare_task  # noqa: E402


def load_models(suite: str, task: str, seed: int):
    cfg = load_config(suite)
    data = load_task(task)
    splits, spec = prepare_task(data)
    beex, beex_dir, _ = obtain_model("beexformer", spec, splits["train"], splits["val"], cfg, seed)
    fp32, fp32_dir, _ = obtain_model("fp32", spec, splits["train"], splits["val"], cfg, seed)
    packed = get_adapter_class("beexformer-packed").derive(beex, splits["val"])
    return {"beexformer": beex, "fp32": fp32, "beexformer-packed": packed}, splits["test"], {
        "beexformer": str(beex_dir), "fp32": str(fp32_dir)}


def singles(test, n: int | None = None):
    out = []
    for i in range(len(test) if n is None else min(n, len(test))):
        b = test.batch(slice(i, i + 1))
        out.append((b.input_ids, b.attention_mask))
    return out


@torch.inference_mode()
def check(float_adapter, packed, test) -> dict:
    res = {}
    # batch 1, each sample at its own length
    pred_same = exit_same = 0
    max_diff = 0.0
    for ids, mask in singles(test):
        a, b = float_adapter.predict(ids, mask), packed.predict(ids, mask)
        pred_same += int(torch.equal(a.logits.argmax(-1), b.logits.argmax(-1)))
        exit_same += int(torch.equal(a.exit_block, b.exit_block))
        max_diff = max(max_diff, float((a.logits - b.logits).abs().max()))
    res["batch1"] = {"n": len(test), "same_prediction": pred_same, "same_exit_block": exit_same,
                     "max_abs_logit_diff": max_diff}
    # batched, padded, with row removal
    pred_same = exit_same = 0
    max_diff = 0.0
    hist = torch.zeros(float_adapter.module().cfg.n_blocks + 1, dtype=torch.long)
    for b in test.batches(256):
        a, p = float_adapter.predict(b.input_ids, b.attention_mask), packed.predict(b.input_ids, b.attention_mask)
        pred_same += int((a.logits.argmax(-1) == p.logits.argmax(-1)).sum())
        exit_same += int((a.exit_block == p.exit_block).sum())
        max_diff = max(max_diff, float((a.logits - p.logits).abs().max()))
        hist += torch.bincount(p.exit_block, minlength=len(hist))
    res["batched256"] = {"n": len(test), "same_prediction": pred_same, "same_exit_block": exit_same,
                         "max_abs_logit_diff": max_diff, "exit_histogram": hist[1:].tolist()}
    # the calibrated rule may send most samples to one block: also every delta of the
    # calibration grid (batched, rows leave at every depth)
    from beexbench.adapters.encoder_adapter import make_rule
    from beexbench.adapters.beexformer import DELTA_GRID

    rule0 = packed.rule
    pred_same = exit_same = n = 0
    max_diff = 0.0
    hist = torch.zeros(len(hist), dtype=torch.long)
    try:
        for delta in DELTA_GRID:
            rule = make_rule({**packed.config["exit"], "delta": delta})
            float_adapter.set_rule(rule)
            packed.rule = rule
            for b in test.batches(256):
                a, p = float_adapter.predict(b.input_ids, b.attention_mask), packed.predict(b.input_ids, b.attention_mask)
                pred_same += int((a.logits.argmax(-1) == p.logits.argmax(-1)).sum())
                exit_same += int((a.exit_block == p.exit_block).sum())
                n += len(b)
                max_diff = max(max_diff, float((a.logits - p.logits).abs().max()))
                hist += torch.bincount(p.exit_block, minlength=len(hist))
    finally:
        float_adapter.set_rule(rule0)
        packed.rule = rule0
    res["delta_grid_batched"] = {"n": n, "same_prediction": pred_same, "same_exit_block": exit_same,
                                 "max_abs_logit_diff": max_diff, "exit_histogram": hist[1:].tolist()}
    return res


def layer_speed(adapter, test, threads: int, rounds: int, min_run_time: float) -> list[dict]:
    from bench_kernels import bench_shape

    enc = adapter.config["encoder"]
    d, f = int(enc["d_model"]), int(enc["d_ff"])
    m = int(round(float(test.attention_mask.sum(1).float().mean())))
    shapes = [(m, d, d), (m, d, f), (m, f, d), (1, d, d), (128, 512, 512)]
    rows = []
    for s in dict.fromkeys(shapes):
        r = bench_shape(*s, threads, rounds, min_run_time)
        r["what"] = {(m, d, d): "q/k/v/o", (m, d, f): "ffn in", (m, f, d): "ffn out",
                     (1, d, d): "one token"}.get(s, "reference")
        rows.append(r)
    return rows


@torch.inference_mode()
def e2e_speed(models: dict, samples, threads: int, rounds: int) -> dict:
    torch.set_num_threads(threads)
    for a in models.values():  # warm-up (and the fused engine's first call)
        for s in samples[:20]:
            a.predict(*s)
    times = {k: [] for k in models}
    for _ in range(rounds):
        for name, a in models.items():
            t0 = time.perf_counter()
            for s in samples:
                a.predict(*s)
            times[name].append((time.perf_counter() - t0) / len(samples))
    return {k: {"ms_per_sample": statistics.median(v) * 1e3, "min_ms": min(v) * 1e3} for k, v in times.items()}


@torch.inference_mode()
def profile(models: dict, samples, threads: int, top: int) -> dict:
    from torch.profiler import ProfilerActivity, profile as tprofile

    torch.set_num_threads(threads)
    out = {}
    for name, a in models.items():
        for s in samples[:20]:
            a.predict(*s)
        with tprofile(activities=[ProfilerActivity.CPU]) as prof:
            for s in samples:
                a.predict(*s)
        table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=top)
        total = sum(e.self_cpu_time_total for e in prof.key_averages())
        out[name] = {"table": table, "ops_self_cpu_us_per_sample": total / len(samples)}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--suite", default="default")
    ap.add_argument("--task", default="rotten_tomatoes")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--check", action="store_true", help="only the exactness check over every test sample")
    ap.add_argument("--profile", action="store_true", help="torch.profiler tables of batch-1 predict")
    ap.add_argument("--threads", default="2,1", help="comma-separated thread counts for the end-to-end figures")
    ap.add_argument("--samples", type=int, default=256, help="test sentences timed per round")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--layer-rounds", type=int, default=3)
    ap.add_argument("--min-run-time", type=float, default=0.2)
    ap.add_argument("--json", metavar="PATH")
    args = ap.parse_args(argv)

    models, test, dirs = load_models(args.suite, args.task, args.seed)
    beex, packed = models["beexformer"], models["beexformer-packed"]
    enc = beex.config["encoder"]
    result = {"benchmark": "bench_packed", "task": args.task, "suite": args.suite, "checkpoints": dirs,
              "backend": kernels.backend(), "engine": _native.mode(), "torch": torch.__version__,
              "cpu_count": os.cpu_count(), "architecture": {k: enc[k] for k in ("d_model", "n_heads", "n_blocks", "d_ff")},
              "exit_rule": packed.rule.to_dict()}
    print(f"task={args.task} d_model={enc['d_model']} heads={enc['n_heads']} blocks={enc['n_blocks']} "
          f"d_ff={enc['d_ff']} rule={packed.rule.to_dict()}")
    print(f"kernels={result['backend']} engine={result['engine']} torch={torch.__version__}")

    if args.check:
        res = check(beex, packed, test)
        result["check"] = res
        for k, r in res.items():
            print(f"{k:>18}: {r['same_prediction']}/{r['n']} same predictions, {r['same_exit_block']}/{r['n']} same "
                  f"exit blocks, max |logit diff| {r['max_abs_logit_diff']:.3g}"
                  + (f", exit histogram {r['exit_histogram']}" if "exit_histogram" in r else ""))
        ok = all(r["same_prediction"] == r["n"] and r["same_exit_block"] == r["n"] for r in res.values())
        _write(args.json, result)
        return 0 if ok else 1

    samples = singles(test, args.samples)
    order = {"beexformer-packed": packed, "beexformer": beex, "fp32": models["fp32"]}
    if args.profile:
        prof = profile(order, samples[:100], int(args.threads.split(",")[0]), 18)
        for name, p in prof.items():
            print(f"\n== {name}: {p['ops_self_cpu_us_per_sample']:.0f} us of op self time per sample ==")
            print(p["table"])
        result["profile"] = {k: v["ops_self_cpu_us_per_sample"] for k, v in prof.items()}
        _write(args.json, result)
        return 0

    load0 = os.getloadavg()[0]
    result["layers"] = {}
    for t in [int(v) for v in args.threads.split(",")]:
        torch.set_num_threads(t)
        rows = layer_speed(beex, test, t, args.layer_rounds, args.min_run_time)
        result["layers"][t] = rows
        print(f"\n(a) per layer, threads={t}: fp32 nn.Linear vs packed binary_linear (activation packing included)")
        print(f"{'layer':>10} {'MxKxN':>12} {'fp32 us':>9} {'packed us':>10} {'speed-up':>9}")
        for r in rows:
            print(f"{r['what']:>10} {r['shape']:>12} {r['fp32_linear_us']:>9.1f} {r['binary_linear_us']:>10.1f} "
                  f"{r['speedup']:>8.1f}x")
    result["end_to_end"] = {}
    for t in [int(v) for v in args.threads.split(",")]:
        e2e = e2e_speed(order, samples, t, args.rounds)
        result["end_to_end"][t] = e2e
        base = e2e["fp32"]["ms_per_sample"]
        print(f"\n(b) end to end, batch-1 predict on {len(samples)} real test sentences, threads={t} "
              f"(median of {args.rounds} rounds)")
        print(f"{'model':>18} {'ms/sample':>10} {'min':>8} {'vs fp32':>8}")
        for name, r in e2e.items():
            print(f"{name:>18} {r['ms_per_sample']:>10.3f} {r['min_ms']:>8.3f} {base / r['ms_per_sample']:>7.2f}x")
    load1 = os.getloadavg()[0]
    result["loadavg_1min_before_after"] = [round(load0, 2), round(load1, 2)]
    print(f"\nload average (1 min) before/after: {load0:.2f}/{load1:.2f} on {os.cpu_count()} CPUs"
          + (" - other processes compete for the cores: timings are noisy" if max(load0, load1) > (os.cpu_count() or 1) - 0.5 else ""))
    _write(args.json, result)
    return 0


def _write(path: str | None, result: dict) -> None:
    if path:
        Path(path).write_text(json.dumps(result, indent=2, default=str) + "\n")


if __name__ == "__main__":
    raise SystemExit(main())
