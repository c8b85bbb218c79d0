"""One isolated measurement (``python -m beexbench._measure_worker JOB OUT PARENT_PID``), started by
:mod:`beexbench.runner.isolate` with its threads and OpenMP wait policy already in the
environment. First it ties its life to the run's (below), then pins the CPU affinity, imports
torch, loads the checkpoint and writes the measured sections to OUT. Exit status 0 only when OUT
was written.

A worker must not outlive its run (a killed run would leave it measuring beside the resumed one).
Before anything heavy it asks Linux to send it SIGTERM when its parent dies (``PR_SET_PDEATHSIG``;
where there is no such call, a thread polls the parent's pid), and on SIGTERM with its parent gone
it removes the run's temporary folder (JOB's folder, named ``beexbench-measure-<PARENT_PID>-*``,
so nothing else is ever removed) and exits 143. A SIGTERM while the parent lives exits 143 within ORPHAN_WAIT_S."""
from __future__ import annotations

import json
import os
import signal
import sys
import time

FOLDER_PREFIX = "beexbench-measure-"  # the same as beexbench.runner.isolate's (which loads torch)
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
ORPHAN_WAIT_S = 3.0  # on SIGTERM: how long to wait for the parent's death to be complete
POLL_S = 1.0  # where there is no parent-death signal: how often the parent is looked for


def die_with_parent(parent: int, folder: str) -> None:
    """End this process (removing ``folder`` when it is the run's own) as soon as ``parent`` is gone."""

    def gone(signum=signal.SIGTERM, frame=None) -> None:
        # the signal comes as the parent's threads die, maybe before this process is handed to a new
        # parent (until then the old pid is its parent's): wait for that, briefly
        deadline = time.monotonic() + ORPHAN_WAIT_S
        while os.getppid() == parent and time.monotonic() < deadline:
            time.sleep(0.02)
        if os.getppid() != parent and os.path.basename(folder).startswith(f"{FOLDER_PREFIX}{parent}-"):
            import shutil

            shutil.rmtree(folder, ignore_errors=True)
        os._exit(128 + signum)

    signal.signal(signal.SIGTERM, gone)
    if not _parent_death_signal():
        import threading

        def watch() -> None:
            while os.getppid() == parent:
                time.sleep(POLL_S)
            gone()

        threading.Thread(target=watch, name="beexbench-parent-watch", daemon=True).start()
    if os.getppid() != parent:  # the parent died before the signal was asked for
        gone()


def _parent_death_signal() -> bool:
    """Ask Linux for SIGTERM when the parent dies; False where that is not available."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def main(argv: list[str]) -> int:
    job_path, out_path = argv[1], argv[2]
    if len(argv) > 3:
        die_with_parent(int(argv[3]), os.path.dirname(os.path.abspath(job_path)))
    with open(job_path, encoding="utf-8") as f:
        job = json.load(f)
    if job.get("cores") and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, job["cores"])  # before torch starts its threads: they inherit it

    import torch
    from safetensors.torch import load_file

    from beexbench._io import atomic_write_text
    from beexbench.adapters.registry import load_model
    from beexbench.config import LatencySettings
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
    atomic_write_text(out_path, json.dumps(speed.to_dict()))  # read by runner.isolate with Speed.from_dict
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv))
    except Exception as exc:  # noqa: BLE001 - the parent reports the last line
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        sys.exit(1)
