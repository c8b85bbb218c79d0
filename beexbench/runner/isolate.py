"""Latency, memory and energy measured per thread setting, each in a fresh process.

A process that trained models, loaded datasets and ran other cells is not a fair place to time
one: its OpenMP pool was sized and told how to wait (``OMP_WAIT_POLICY``) when torch loaded, its
heap and caches hold the earlier work. So, as optimum-benchmark's process launcher does, every
thread setting of a cell (``Target.thread_settings()``: 1 thread and all cores on a CPU) is
measured by ``python -m beexbench._measure_worker`` in a fresh interpreter whose environment is set
before torch is imported: ``OMP_NUM_THREADS`` / ``MKL_NUM_THREADS`` (the setting),
``OMP_WAIT_POLICY`` (the target's ``wait_policy``), the CPU affinity (the target's pinned cores, if
any). The worker loads the cell's checkpoint from the model store, reads the test inputs the parent
wrote, runs :func:`~beexbench.runner.measure.measure_speed` and writes its typed ``Speed`` through the
result codec, which this process reads back the same way a record is read.

A worker dies with the run: the run kills it on every way out of :func:`run_worker` (an error,
Ctrl-C, SIGTERM, which the CLI turns into Ctrl-C), and the worker itself (``_measure_worker``)
asks Linux for SIGTERM when its parent dies (``PR_SET_PDEATHSIG``; elsewhere it polls its parent),
then removes the run's temporary folder and exits. That folder is named after the run's pid
(``beexbench-measure-<pid>-*``), so the next measurement removes any whose process is gone.

The record's headline (``batch1``, ``batch_sweep``, memory, energy) is the setting with the lowest
batch-1 median; every setting's records are kept (``latency_by_threads``), and a warning says when
one thread beats all of them (the N-thread figure then measures the extra threads' cost, not the model: thread
wake-up and synchronisation, or a loaded machine whose other work holds the cores; the record cannot tell which).
"""
from __future__ import annotations

import dataclasses

import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from safetensors.torch import save_file

from .._measure_worker import FOLDER_PREFIX  # + the owning run's pid + "-": see remove_stale_folders
from .._registry import REGISTERED_AT_RUN_TIME
from ..adapters.base import ModelAdapter
from ..config import LatencySettings
from ..errors import BeexError
from ..profilers.latency import ISOLATED_ENV
from ..progress import NULL_PROGRESS, Progress
from ..results.metrics import Latency
from ..targets import Target
from ..training.batches import EncodedSplit
from .measure import Speed, measure_speed

WORKER = "beexbench._measure_worker"  # outside beexbench.runner, whose import loads torch
WAKEUP_MARGIN = 1.10  # warn when 1 thread is at least this much faster than the best multi-thread setting


@dataclass(frozen=True)
class Job:
    """What a worker process needs: the checkpoint, the target as the run built it, one setting."""

    checkpoint: str
    target: str
    target_options: dict
    threads: int
    cores: list[int] | None
    settings: dict
    energy: bool
    inputs: str  # safetensors file with the test split's input_ids and attention_mask


def isolation_refusal(adapter: ModelAdapter, target: Target) -> str | None:
    """Why this cell cannot be measured in a fresh process (a model or target registered by
    code in this process, which a new interpreter does not run), or None."""
    from ..adapters.registry import ADAPTERS
    from ..targets._registry import TARGETS

    for registry, name, what in ((ADAPTERS, adapter.name, "model"), (TARGETS, target.name, "target")):
        if name in registry and registry.entry(name).origin == REGISTERED_AT_RUN_TIME:
            return (f"{what} '{name}' was registered at run time, which a fresh process does not see: measured in the "
                    "run's own process (register it through an entry point to measure it isolated)")
    return None


def worker_env(threads: int, wait_policy: str) -> dict[str, str]:
    """The measuring process's environment: set before it imports torch."""
    env = dict(os.environ)
    env.update({"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), "OMP_WAIT_POLICY": wait_policy,
                ISOLATED_ENV: "1", "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)})
    return env


def folder_prefix(pid: int | None = None) -> str:
    """The temporary folder's name up to tempfile's random part: it names the process that owns it."""
    return f"{FOLDER_PREFIX}{os.getpid() if pid is None else pid}-"


def remove_stale_folders(root: Path | None = None) -> list[Path]:
    """Remove this user's ``beexbench-measure-<pid>-*`` folders in ``root`` (the temporary folder)
    whose process is gone (a run killed by SIGKILL or a power cut); returns them. A folder whose pid
    is alive (perhaps reused by another process) is kept: only a surely dead owner's is removed."""
    removed = []
    root = Path(tempfile.gettempdir()) if root is None else root
    try:
        entries = list(root.iterdir())
    except OSError:
        return removed
    for path in entries:
        match = re.fullmatch(re.escape(FOLDER_PREFIX) + r"([0-9]{1,10})-[^/]+", path.name)
        if not match or pid_alive(int(match.group(1))):
            continue
        try:
            st = path.lstat()
        except OSError:
            continue
        if stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid():  # a link or another user's folder is left alone
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists (one of another user counts as alive)."""
    if pid <= 0:
        return True  # not a process id: not ours to judge
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def run_worker(job: Job, wait_policy: str, timeout_s: float, folder: Path) -> Speed:
    """Run one measurement process and read its sections; a failure is one-line BeexError. The
    worker is killed on every way out (``subprocess.run`` kills it on any exception, Ctrl-C and
    SIGTERM included) and is told this process's pid, so that it ends itself if this one dies."""
    job_path, out_path = folder / f"job-{job.threads}.json", folder / f"speed-{job.threads}.json"
    job_path.write_text(json.dumps(job.__dict__), encoding="utf-8")
    try:
        proc = subprocess.run([sys.executable, "-m", WORKER, str(job_path), str(out_path), str(os.getpid())],
                              env=worker_env(job.threads, wait_policy), capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise BeexError(f"the isolated measurement at {job.threads} thread(s) ran past {timeout_s:.0f} s: lower "
                        "latency.max_seconds or set latency.isolate = false") from None
    if proc.returncode != 0 or not out_path.is_file():
        tail = (proc.stderr or proc.stdout).strip().splitlines()
        raise BeexError(f"the isolated measurement at {job.threads} thread(s) failed (exit {proc.returncode}): "
                        f"{tail[-1] if tail else 'no output'}")
    return Speed.from_dict(json.loads(out_path.read_text(encoding="utf-8")), source="the isolated measurement's output")


def _timeout(settings: LatencySettings) -> float:
    """Every timed loop at its max_seconds, plus start-up (torch import, kernels, model load)."""
    loops = 1 + len(settings.batch_sizes) + len(settings.seq_lens)
    return 180.0 + settings.max_seconds * loops + settings.samples * 0.05


def measure_speed_by_threads(adapter: ModelAdapter, checkpoint: Path | None, test: EncodedSplit, target: Target,
                             target_options: dict, settings: LatencySettings, energy: bool,
                             progress: Progress = NULL_PROGRESS) -> tuple[Speed, tuple[Latency, ...], list[str]]:
    """Measure at every thread setting of ``target``; returns (the fastest setting's Speed, every
    setting's latency records, warnings). Isolated unless ``settings.isolate`` is off or the
    cell cannot be (see :func:`isolation_refusal`), which a warning then says."""
    warnings: list[str] = []
    refusal = isolation_refusal(adapter, target) if settings.isolate else None
    if refusal:
        warnings.append(refusal)
    isolated = settings.isolate and refusal is None and checkpoint is not None
    if not settings.isolate:
        warnings.append("latency measured in the run's own process (latency.isolate = false): its threads and "
                        "OpenMP wait policy are the run's, not the target's")
    speeds: dict[int, Speed] = {}
    if isolated:
        remove_stale_folders()
    with tempfile.TemporaryDirectory(prefix=folder_prefix()) as tmp:
        inputs = Path(tmp) / "inputs.safetensors"
        if isolated:
            save_file({"input_ids": test.input_ids.contiguous(), "attention_mask": test.attention_mask.contiguous()},
                      str(inputs))
        for threads in target.thread_settings():
            setting = target.with_threads(threads)
            if isolated:
                job = Job(checkpoint=str(checkpoint), target=target.name, target_options=dict(target_options),
                          threads=threads, cores=list(setting.cores) if setting.cores is not None else None,
                          settings=dict(settings.__dict__), energy=energy, inputs=str(inputs))
                with progress.task(f"measuring {adapter.name} at {threads} thread(s) in a fresh process", total=None):
                    speeds[threads] = run_worker(job, target.wait_policy, _timeout(settings), Path(tmp))
            else:
                speeds[threads] = measure_speed(adapter, test, setting, settings, energy, progress)
    best = min(speeds, key=lambda t: speeds[t].batch1.median)
    records = tuple(r for t in sorted(speeds) for r in (speeds[t].batch1, *speeds[t].batch_sweep))
    warnings += wakeup_warnings(speeds)
    # the static-depth latencies of every model at one common setting, the fewest threads (1 on a
    # CPU), so that a speed ladder compares its rungs at equal threads as well as equal depth; the
    # deployment scenarios there too (LoadGen's threads then keep a core of their own)
    fewest = min(speeds)
    chosen = dataclasses.replace(speeds[best], static_depth=speeds[fewest].static_depth,
                                 static_budget=speeds[fewest].static_budget, scenarios=speeds[fewest].scenarios)
    return chosen, records, warnings


def wakeup_warnings(speeds: dict[int, Speed]) -> list[str]:
    """When 1 thread beats every multi-thread setting, the extra threads cost more than the work they
    share: the N-thread figure measures the threads, not the model. Two causes give the same
    figures (waking and synchronising the threads per op, or a loaded machine whose other work
    holds the cores), so the warning names both."""
    if 1 not in speeds or len(speeds) < 2:
        return []
    one = speeds[1].batch1.median
    many = {t: s.batch1.median for t, s in speeds.items() if t > 1}
    fastest = min(many, key=many.get)
    if many[fastest] >= one * WAKEUP_MARGIN:
        return [f"batch 1: 1 thread ({one:.3g} ms) is {many[fastest] / one:.1f}x faster than {fastest} threads "
                f"({many[fastest]:.3g} ms): the {fastest}-thread figure measures the extra threads' cost, not the model - "
                "thread wake-up and synchronisation, or a loaded machine (other work on the cores); these figures cannot "
                "tell which; the headline uses 1 thread"]
    return []
