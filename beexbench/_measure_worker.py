"""One isolated measurement (``python -m beexbench._measure_worker JOB OUT``), started by
:mod:`beexbench.runner.isolate` with its threads and OpenMP wait policy already in the
environment. Pins the CPU affinity first, then imports torch, loads the checkpoint and writes
the measured sections to OUT. Exit status 0 only when OUT was written."""
from __future__ import annotations

import json
import os
import sys


def main(argv: list[str]) -> int:
    job_path, out_path = argv[1], argv[2]
    with open(job_path, encoding="utf-8") as f:
        job = json.load(f)
    if job.get("cores") and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, job["cores"])  # before torch starts its threads: they inherit it

    import torch
    from safetensors.torch import load_file

    from beexbench._io import atomic_write_text
    from beexbench.adapters.registry import load_model
    from beexbench.config import LatencySettings
    from beexbench.runner.isolate import speed_to_dict
    from beexbench.runner.measure import measure_speed
    from beexbench.targets import get_target
    from beexbench.training.batches import EncodedSplit

    torch.set_num_threads(int(job["threads"]))
    target = get_target(job["target"], **job["target_options"]).with_threads(int(job["threads"]))
    if job.get("cores") is not None:
        target.cores = tuple(job["cores"])
    adapter = load_model(job["checkpoint"])
    tensors = load_file(job["inputs"])
    ids, mask = tensors["input_ids"], tensors["attention_mask"]
    test = EncodedSplit(ids, mask, torch.zeros(len(ids), dtype=torch.long))
    speed = measure_speed(adapter, test, target, LatencySettings(**job["settings"]), bool(job["energy"]))
    atomic_write_text(out_path, json.dumps(speed_to_dict(speed)))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv))
    except Exception as exc:  # noqa: BLE001 - the parent reports the last line
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        sys.exit(1)
