"""Issue 26 (defect 6): SIGTERM stops ``beexbench`` as Ctrl-C does (exit 143, one line, the run
resumes), and a measuring worker never outlives its run nor leaves its temporary folder, even
when the run is killed with SIGKILL (the worker's parent-death signal, then the stale-folder
clean-up of the next measurement)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from beexbench import _signals
from beexbench.cli.worker_cmd import _call
from beexbench.results.store import RunDir
from beexbench.runner.isolate import folder_prefix, remove_stale_folders
from conftest import write_tiny_suite
from test_reliability_cli import _command, _env, _error_lines, beexbench

# A model whose measurement, in an isolated worker with BEEX_TEST_MEASURING set, writes that file
# (the worker's pid) and then waits to be stopped; elsewhere it is the majority floor.
PLUGIN = '''
import os, time
from baselines.floors import Majority


class SlowToMeasure(Majority):
    def predict(self, *args, **kwargs):
        marker = os.environ.get("BEEX_TEST_MEASURING")
        if marker and os.environ.get("BEEXBENCH_ISOLATED") == "1":
            with open(marker + ".tmp", "w") as f:
                f.write(str(os.getpid()))
            os.replace(marker + ".tmp", marker)
            time.sleep(120)
        return super().predict(*args, **kwargs)
'''


@pytest.fixture
def slow_plugin(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("plugin")
    (root / "beex_signals_plugin.py").write_text(PLUGIN)
    info = root / "beex_signals_plugin-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: beex-signals-plugin\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text("[beexbench.adapters]\nslow-to-measure = beex_signals_plugin:SlowToMeasure\n")
    return root


def _alive(pid: int) -> bool:
    """Running (a zombie nobody has reaped yet has ended: in a container, pid 1 may never reap)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _start_measuring(tmp_path: Path, plugin: Path) -> tuple[subprocess.Popen, int, Path, Path]:
    """``beexbench run`` of one isolated cell, left once its worker is measuring; returns the run,
    the worker's pid, the suite and the run's temporary folder root (TMPDIR)."""
    suite = write_tiny_suite(tmp_path, models=("slow-to-measure",), isolate=True)
    marker, tmp = tmp_path / "measuring", tmp_path / "tmp"
    tmp.mkdir()
    proc = subprocess.Popen([*_command(), "run", "--config", str(suite)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            env=_env(tmp_path, plugin, BEEX_TEST_MEASURING=str(marker), TMPDIR=str(tmp)))
    deadline = time.monotonic() + 240
    while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    if not marker.exists():
        proc.kill()
        pytest.fail(f"the worker never started measuring: {proc.communicate(timeout=30)}")
    worker = int(marker.read_text())
    assert worker in {c.pid for c in psutil.Process(proc.pid).children(recursive=True)}
    (folder,) = tmp.iterdir()  # the run's measuring folder, named after the run
    assert folder.name.startswith(folder_prefix(proc.pid))
    return proc, worker, suite, tmp


def test_sigterm_during_measurement_exits_143_leaves_no_worker_or_folder_and_resumes(tmp_path, slow_plugin):
    proc, worker, suite, tmp = _start_measuring(tmp_path, slow_plugin)
    try:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 143, stderr
    assert _error_lines(stderr)[-1] == ("terminated (SIGTERM): finished cells are saved; run the same command again "
                                        "(or --resume RUN) to continue")
    assert not _alive(worker)  # killed and reaped by the run before it exited
    assert list(tmp.iterdir()) == []
    runs = list((tmp_path / "results").iterdir())  # the run's folder, if it made one yet, holds no cell
    assert all(not list(RunDir(run).cells()) and not RunDir(run).finished for run in runs)
    again = beexbench(tmp_path, "run", "--config", str(suite), "--format", "json", plugin=slow_plugin, TMPDIR=str(tmp))
    assert again.returncode == 0, again.stderr
    summary = json.loads(again.stdout[again.stdout.index("{"):])
    assert [s.split("__")[0] for s in summary["written"]] == ["slow-to-measure"]
    run_dir = Path(summary["run_dir"])
    assert all(run == run_dir for run in runs)  # the same run, resumed
    assert RunDir(run_dir).finished and list(tmp.iterdir()) == []


def test_sigkill_of_the_run_ends_its_worker_which_removes_the_folder(tmp_path, slow_plugin):
    proc, worker, _, tmp = _start_measuring(tmp_path, slow_plugin)
    proc.kill()  # SIGKILL: the run cleans up nothing
    proc.communicate(timeout=30)
    deadline = time.monotonic() + 20
    while _alive(worker) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(worker), "the measuring worker outlived its run"
    assert list(tmp.iterdir()) == []  # the worker removed the run's folder on its way out


def test_stale_folders_of_dead_runs_are_removed_and_no_others(tmp_path):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # a pid that has just ended (reused within this test is all but impossible)
    dead = tmp_path / f"{folder_prefix(gone.pid)}abc"
    live = tmp_path / f"{folder_prefix()}def"  # this process: alive
    other = tmp_path / "beexbench-measurements"  # not a measuring folder
    target = tmp_path / "elsewhere"
    for path in (dead, live, other, target):
        path.mkdir()
    (dead / "inputs.safetensors").write_bytes(b"x")
    (target / "keep").write_text("x")
    link = tmp_path / f"{folder_prefix(gone.pid)}link"
    link.symlink_to(target, target_is_directory=True)
    assert remove_stale_folders(tmp_path) == [dead]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, other.name, target.name, link.name])
    assert (target / "keep").is_file()


FAKE_RAY = '''
import os, signal, sys, time
log = sys.argv[1]
def stop(signum, frame):
    open(log, "a").write("stopped by SIGTERM\\n")
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
open(log, "w").write(f"{os.getpid()}\\n")
os.kill(os.getppid(), signal.SIGTERM)  # as if the worker command were stopped now
time.sleep(60)
'''


def test_sigterm_to_the_worker_command_stops_ray_start_gracefully(tmp_path):
    """``beexbench worker`` hands SIGTERM on to ``ray start`` (so it stops the node's processes) and
    waits for it, instead of leaving it running or killing it outright."""
    fake, log = tmp_path / "ray.py", tmp_path / "ray.log"
    fake.write_text(FAKE_RAY)
    # as in a fresh `beexbench worker`: SIGTERM at its default (an in-process ray.init earlier in this
    # pytest process leaves a C-level handler, which sigterm_as_interrupt rightly leaves alone)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    with _signals.sigterm_as_interrupt(), pytest.raises(_signals.Terminated):
        _call([sys.executable, str(fake), str(log)], dict(os.environ))
    assert _signals.received()
    pid, said = log.read_text().splitlines()
    assert said == "stopped by SIGTERM" and not _alive(int(pid))
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # put back as it was
