"""How long `beexbench report` takes, and how much memory it holds, on many cells over many tasks.

    python benchmarks/report_scale.py --tasks 1000 --cells 1000
    python benchmarks/report_scale.py --tasks 100 --cells 1000 --workers 2 -- --figures-for 100

Synthesises ``--cells`` complete result records (schema as the runner writes them: the metrics of
``tests/records.py``) spread round-robin over ``--tasks`` task names, one run folder, in a temporary
folder (or ``--dir``); then times the real console script ``beexbench report`` on them in a fresh
process (arguments after ``--`` are passed to it) and reads its peak RSS (``ru_maxrss`` of the
child: the report process and the figure workers it started, the largest of them). Prints one line:
cells, tasks, wall seconds, peak RSS, the report's size and how many figures it holds. Exit status
1 when the report command failed or ran past ``--limit`` seconds.
"""
from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # records.py: complete metrics as the runner writes them


def synthesise(results: Path, n_cells: int, n_tasks: int) -> None:
    """``n_cells`` ok records, cell i on task ``task-(i mod n_tasks)``, model ``m-(i // n_tasks)``."""
    from records import sample_metrics

    from beexbench.results.schema import CellKey, CellRecord
    from beexbench.results.store import RunDir

    run = RunDir(results / "run-scale")
    run.write_run({"run_id": run.run_id, "suite": "scale"})
    stamp = "2026-01-01T00:00:00+00:00"
    for i in range(n_cells):
        task, model = f"task-{i % n_tasks:04d}", f"m-{i // n_tasks}"
        acc = 0.6 + 0.3 * ((i * 7919) % 1000) / 1000
        run.write_cell(CellRecord(
            key=CellKey(model, task, "cpu", 0), run_id=run.run_id, status="ok", error=None,
            model={"name": model, "description": "A synthetic model.", "training_note": "synthetic"},
            task={"name": task, "description": f"{task}: synthetic", "source": "synthetic",
                  "split_sizes": {"train": 10, "val": 10, "test": 400}},
            target={"name": "cpu", "device": "cpu", "threads": 2, "emulated": False, "description": "host CPU", "notes": []},
            metrics=sample_metrics(acc=acc, ci=(acc - 0.04, acc + 0.04), latency=1.0 + (i % 13) / 10),
            environment={"python": "3.11", "packages": {"torch": "2.x", "beexbench": "0.1.0"},
                         "git": {"commit": "abc123", "dirty": False}, "cpu": {"model": "Bench CPU", "logical_cores": 2,
                                                                              "usable_cores": 2},
                         "threads_used": 2, "gpus": [], "os": {"system": "Linux", "release": "6"}, "timestamp_utc": stamp},
            warnings=[], started_at=stamp, finished_at=stamp))


def _watch(proc: subprocess.Popen, limit: float) -> tuple[int, float]:
    """Wait for ``proc`` (at most ``limit`` s), sampling it and its descendants (the report's
    worker processes) every 0.1 s: the largest summed RSS seen (bytes), and the CPU seconds
    (user + system) each process had used when last seen, summed (a lower bound: the last
    0.1 s of each process is not seen)."""
    import psutil

    peak, cpu, end = 0, {}, time.monotonic() + limit
    root = psutil.Process(proc.pid)
    while proc.poll() is None and time.monotonic() < end:
        total = 0
        try:
            family = [root, *root.children(recursive=True)]
        except psutil.Error:
            family = []
        for p in family:
            try:
                with p.oneshot():
                    total += p.memory_info().rss
                    t = p.cpu_times()
                    cpu[p.pid] = t.user + t.system
            except psutil.Error:
                pass
        peak = max(peak, total)
        time.sleep(0.1)
    return peak, sum(cpu.values())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cells", type=int, default=1000)
    ap.add_argument("--tasks", type=int, default=1000)
    ap.add_argument("--dir", type=Path, help="work folder (kept); default: a temporary folder, removed")
    ap.add_argument("--limit", type=float, default=600.0, help="seconds before the report is stopped (default 600)")
    ap.add_argument("report_args", nargs="*", help="passed to `beexbench report` (after --)")
    args = ap.parse_args()
    if not 1 <= args.tasks <= args.cells <= 1_000_000:
        ap.error("need 1 <= --tasks <= --cells <= 1,000,000")
    work = args.dir or Path(tempfile.mkdtemp(prefix="beexbench-report-scale-"))
    try:
        results, out = work / "results", work / "report" / "report.html"
        if results.exists():
            shutil.rmtree(results)
        t0 = time.perf_counter()
        synthesise(results, args.cells, args.tasks)
        made = time.perf_counter() - t0
        exe = shutil.which("beexbench") or ""
        cmd = [exe] if exe else [sys.executable, "-m", "beexbench.cli"]
        cmd += ["report", "--results", str(results), "--out", str(out), *args.report_args]
        t0 = time.perf_counter()
        log = work / "report.log"
        with open(log, "w") as sink:
            proc = subprocess.Popen(cmd, stdout=sink, stderr=subprocess.STDOUT, env={**os.environ, "TERM": "dumb"})
            total_peak, cpu_s = _watch(proc, args.limit)
        wall = time.perf_counter() - t0
        largest = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # kB on Linux: the largest process waited for
        if proc.returncode is None:
            proc.kill()
            proc.wait()
            print(f"report: killed after {args.limit:.0f} s ({args.cells} cells, {args.tasks} tasks)")
            return 1
        if proc.returncode != 0:
            print(log.read_text()[-4000:])
            print(f"report failed: exit {proc.returncode}")
            return 1
        html = out.read_text(encoding="utf-8")
        n_figs = len(re.findall(r"<img ", html))
        load = os.getloadavg()[0]
        print(f"cells={args.cells} tasks={args.tasks} wall={wall:.1f}s cpu={cpu_s:.0f}s load1={load:.1f} peak_rss_total={total_peak / 2**20:.0f}MiB "
              f"peak_rss_largest_process={largest:.0f}MiB "
              f"html={out.stat().st_size / 2**20:.1f}MiB figures={n_figs} (records written in {made:.1f}s) "
              f"cpus={os.cpu_count()} args={' '.join(args.report_args) or '(defaults)'}")
        return 0
    finally:
        if args.dir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
