"""Re-measure a run's batch-1 latencies with an independent timer and compare.

    python benchmarks/bench_latency_check.py --results results/<run-id>
    python benchmarks/bench_latency_check.py --results results/<run-id> --models fp32,beexformer-packed

For every ok cell of the run and every thread setting its record holds (``latency_by_threads``),
a fresh process is started with the same environment as beexbench's measurement workers
(``beexbench.runner.isolate.worker_env``: threads and OpenMP wait policy set before torch loads),
loads the cell's checkpoint and the same test inputs (the first ``latency.samples`` test samples,
each trimmed to its own length), and times one pass over all of them with
``torch.utils.benchmark.Timer.blocked_autorange`` (its median pass / samples = the mean cost of
one sample). beexbench's figure for the same quantity is the mean of its per-call values (a
timer that sees only whole passes measures means, not medians). The ratio beexbench / independent
is printed; ``--tolerance`` (default 10%) marks the misses, and the exit status is 1 when any
setting misses it. The ``tail`` column is beexbench's mean / median: far above 1, most calls are
fast but some are much slower (e.g. a thread pool that does not always wake in time), and the
headline median hides that.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def child(args: argparse.Namespace) -> None:
    """In the fresh process: load, build the inputs, time one pass over them."""
    import torch
    import torch.utils.benchmark as tb

    from beexbench.adapters.registry import load_model
    from beexbench.data import load_task
    from beexbench.runner.run import prepare_task

    # the inputs are prepared on one thread: a torch pool woken by this work would spin beside the
    # timed code under OMP_WAIT_POLICY=ACTIVE (beexbench's workers read ready-made inputs)
    torch.set_num_threads(1)
    splits, _ = prepare_task(load_task(args.task, limit=args.limit))
    test = splits["test"]
    singles = [tuple(t for t in (b.input_ids, b.attention_mask))
               for b in (test.batch(slice(i, i + 1)) for i in range(min(args.samples, len(test))))]
    adapter = load_model(args.checkpoint)
    torch.set_num_threads(args.threads)

    def one_pass():
        for x in singles:
            adapter.predict(*x)

    with torch.inference_mode():
        for _ in range(3):
            one_pass()
        m = tb.Timer(stmt="f()", globals={"f": one_pass}, num_threads=args.threads).blocked_autorange(min_run_time=args.min_run_time)
    print(json.dumps({"per_sample_ms": m.median / len(singles) * 1e3, "passes": len(m.times), "threads": torch.get_num_threads()}))


def beexbench_figure(rec: dict) -> float:
    """The mean of the record's per-call values (ms)."""
    return statistics.fmean(rec["values"])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", type=Path, help="a run folder (results/<run-id>)")
    ap.add_argument("--models", default="", help="comma-separated models (default: every ok cell)")
    ap.add_argument("--tolerance", type=float, default=0.10)
    ap.add_argument("--min-run-time", type=float, default=3.0, help="seconds per blocked_autorange")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    for name, typ in (("checkpoint", str), ("task", str), ("limit", int), ("samples", int), ("threads", int)):
        ap.add_argument(f"--{name}", type=typ, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args)
        return 0
    from beexbench.runner.isolate import worker_env

    run = json.loads((args.results / "run.json").read_text())
    cfg = run["config"]
    wanted = {m for m in args.models.split(",") if m}
    rows, missed = [], 0
    print(f"load average (1, 5, 15 min) at the start: {os.getloadavg() if hasattr(os, 'getloadavg') else None}")
    for path in sorted((args.results / "cells").glob("*.json")):
        doc = json.loads(path.read_text())
        if doc["status"] != "ok" or (wanted and doc["key"]["model"] not in wanted):
            continue
        wait = doc["target"].get("wait_policy") or "ACTIVE"
        for rec in doc["metrics"].get("latency_by_threads") or [doc["metrics"]["batch1"]]:
            if rec["batch_size"] != 1 or rec.get("seq_len"):
                continue
            cmd = [sys.executable, __file__, "--child", "--checkpoint", doc["model"]["checkpoint"], "--task",
                   doc["key"]["task"], "--samples", str(rec["n_inputs"]), "--threads", str(rec["threads"]),
                   "--min-run-time", str(args.min_run_time)] + (["--limit", str(cfg["limit"])] if cfg.get("limit") else [])
            out = subprocess.run(cmd, env=worker_env(rec["threads"], rec.get("wait_policy") or wait), capture_output=True,
                                 text=True, check=False)
            if out.returncode:
                print(f"{doc['key']['model']} at {rec['threads']} thread(s): the independent measurement failed: "
                      f"{out.stderr.strip().splitlines()[-1] if out.stderr.strip() else out.returncode}")
                missed += 1
                continue
            ind = json.loads(out.stdout.strip().splitlines()[-1])
            ours = beexbench_figure(rec)
            ratio = ours / ind["per_sample_ms"]
            ok = abs(ratio - 1) <= args.tolerance
            missed += not ok
            rows.append((doc["key"]["model"], rec["threads"], rec.get("wait_policy"), ours, ind["per_sample_ms"], ratio, ok,
                         ours / rec["median"]))
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    print(f"load average (1, 5, 15 min) at the end: {load}")
    print(f"{'model':24} {'thr':>3} {'wait':>7} {'beexbench mean ms':>17} {'torch.utils.benchmark ms':>24} {'ratio':>6} {'tail':>5}")
    for model, t, wait, ours, ind, ratio, ok, tail in rows:
        print(f"{model:24} {t:>3} {str(wait):>7} {ours:>17.4f} {ind:>24.4f} {ratio:>6.3f} {tail:>5.2f}{'' if ok else '  MISS'}")
    print(f"{len(rows)} settings compared, {missed} outside ±{args.tolerance:.0%}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
