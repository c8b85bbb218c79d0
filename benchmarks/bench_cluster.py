"""Wall time of one suite with the local executor and on a local Ray cluster, side by side.

    python benchmarks/bench_cluster.py                       # the smoke suite, 2 Ray workers
    python benchmarks/bench_cluster.py --suite default --workers 2 --worker-cpus 1 --json out.json

Both runs start from fresh results and model-store folders (under ``--out``, default a temporary
folder), so both train every model; the task data is loaded once before either is timed, so neither
pays a download. The cluster is Ray's own (``ray.cluster_utils.Cluster``) on this machine's loopback
address: a head that trains (``--head-cpus``, default none) and ``--workers`` nodes, each lending
``--worker-cpus`` CPUs to training and advertising every target of the run (``--split-targets``: one
target per worker, round robin). Its start-up time is printed apart from the run's. On one machine
the workers share its cores, so the cluster's latency figures are not comparable to the local ones
(the records say so); the point here is wall time and the executor's overhead.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# Ray rewrites 127.0.0.1 to the machine's network address unless its single-machine mode is on; read
# when ray is imported, so set first (the cluster then listens on loopback only)
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

from beexbench.config import load_config  # noqa: E402
from beexbench.data import load_task  # noqa: E402
from beexbench.results.store import RunDir  # noqa: E402
from beexbench.runner import run_suite  # noqa: E402


def config(suite: str, folder: Path, limit: int | None):
    flags = dict(results_dir=str(folder / "results"), models_dir=str(folder / "models"), run_id="bench")
    if limit is not None:
        flags["limit"] = limit
    return load_config(suite, **flags)


def timed_run(cfg, targets: list[str], executor=None) -> dict:
    start = time.perf_counter()
    summary = run_suite(cfg, targets=targets, executor=executor)
    seconds = time.perf_counter() - start
    records = list(RunDir(summary.run_dir).cells())
    return {"seconds": round(seconds, 1), "cells": len(records), "ok": sum(r.status == "ok" for r in records),
            "failed": [k.slug for k, _ in summary.failed], "run_dir": str(summary.run_dir)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--suite", default="smoke")
    ap.add_argument("--targets", default=None, help="comma-separated (default: the suite's target)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--worker-cpus", type=int, default=1)
    ap.add_argument("--head-cpus", type=int, default=0)
    ap.add_argument("--split-targets", action="store_true", help="one target per worker instead of all on each")
    ap.add_argument("--limit", type=int, default=None, help="examples per split (default: the suite's)")
    ap.add_argument("--out", type=Path, default=None, help="where both runs write (default: a temporary folder)")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = ap.parse_args(argv)

    import ray
    from ray.cluster_utils import Cluster

    from beexbench.runner.executors.ray_driver import RayExecutor
    from beexbench.runner.executors.resources import node_resources

    out = args.out or Path(tempfile.mkdtemp(prefix="bench-cluster-"))
    local_cfg, ray_cfg = config(args.suite, out / "local", args.limit), config(args.suite, out / "ray", args.limit)
    targets = args.targets.split(",") if args.targets else [local_cfg.target]
    for task in local_cfg.tasks:  # the data cache warm for both: neither run is timed downloading
        load_task(task, limit=local_cfg.limit)
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S %Z')}  load average {os.getloadavg()}  cores {os.cpu_count()}", flush=True)

    local = timed_run(local_cfg, targets)
    print(f"local executor: {local['seconds']} s, {local['ok']}/{local['cells']} cells ok", flush=True)

    start = time.perf_counter()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": args.head_cpus, "node_ip_address": "127.0.0.1",
                                                             "include_dashboard": False})
    try:
        for i in range(args.workers):
            mine = [targets[i % len(targets)]] if args.split_targets else targets
            cluster.add_node(num_cpus=args.worker_cpus, resources=node_resources(mine), node_ip_address="127.0.0.1")
        cluster.wait_for_nodes()
        startup = round(time.perf_counter() - start, 1)
        print(f"Ray cluster up in {startup} s: head {args.head_cpus} CPU(s), {args.workers} worker(s) x "
              f"{args.worker_cpus} CPU(s)", flush=True)
        clustered = timed_run(ray_cfg, targets, RayExecutor(address=cluster.address))
    finally:
        if ray.is_initialized():
            ray.shutdown()
        cluster.shutdown()
    print(f"ray executor:   {clustered['seconds']} s, {clustered['ok']}/{clustered['cells']} cells ok "
          f"(+ {startup} s cluster start-up)", flush=True)
    print(f"load average after: {os.getloadavg()}")
    figures = {"suite": args.suite, "targets": targets, "workers": args.workers, "worker_cpus": args.worker_cpus,
               "head_cpus": args.head_cpus, "split_targets": args.split_targets, "local": local, "ray": clustered,
               "ray_startup_seconds": startup, "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "cores": os.cpu_count()}
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0 if not (local["failed"] or clustered["failed"]) else 1


if __name__ == "__main__":
    sys.exit(main())
