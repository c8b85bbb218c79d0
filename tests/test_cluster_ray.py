"""The Ray executor on a real three-node cluster started on 127.0.0.1 inside the test (a head with
one CPU and no target, one node measuring ``cpu``, one measuring ``edge-2t``): the smoke suite's
cells land on the nodes that advertise their targets, each model trains once, the accuracies match
the local executor's, and a worker SIGKILLed mid-measurement costs a retry, not a cell."""
from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest

# Ray rewrites 127.0.0.1 to the machine's network address (ray._private.services.resolve_ip_for_localhost)
# unless its single-machine mode is on; it is read when ray is imported, so it is set first: every
# node of the test cluster then listens on the loopback address only
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
ray = pytest.importorskip("ray", reason="the Ray executor's tests need Ray: pip install -e '.[ray]'")

from conftest import write_tiny_csv  # noqa: E402

from beexbench.config import load_config  # noqa: E402
from beexbench.results.store import RunDir  # noqa: E402
from beexbench.runner import run_suite  # noqa: E402
from beexbench.runner.executors.ray_driver import RayExecutor  # noqa: E402
from beexbench.runner.executors.resources import node_resources  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")

TARGETS = ["cpu", "edge-2t"]
FAST = {"warmup": 1, "min_iters": 3, "min_seconds": 0.05, "max_seconds": 1.0, "batch_sizes": [1, 4], "samples": 8,
        "isolate": False}


@pytest.fixture(scope="module")
def cluster():
    """Head (1 CPU, no target: training only) + one node per target (1 CPU each), on 127.0.0.1."""
    from ray.cluster_utils import Cluster

    local = {"node_ip_address": "127.0.0.1", "include_dashboard": False}
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, **local})
    nodes = {t: c.add_node(num_cpus=1, resources=node_resources([t]), **local) for t in TARGETS}
    c.wait_for_nodes()
    try:
        yield c, {t: n.node_id for t, n in nodes.items()}
    finally:
        if ray.is_initialized():
            ray.shutdown()
        c.shutdown()


def smoke(tmp_path: Path, name: str, **overrides):
    """The smoke suite (its models, floors and model settings) on a tiny offline task, fast latency."""
    csv = write_tiny_csv(tmp_path / "tiny.csv")
    flags = dict(tasks=[f"csv:{csv}?text=text&label=label&name=tiny"], energy=False, latency=dict(FAST),
                 results_dir=str(tmp_path / name / "results"), models_dir=str(tmp_path / name / "models"), run_id=name)
    flags.update(overrides)
    return load_config("smoke", **flags)


def accuracies(run_dir: Path) -> dict[tuple[str, str], float]:
    return {(r.key.model, r.key.target): r.metrics.accuracy.value for r in RunDir(run_dir).cells()}


@pytest.mark.timeout(150)
def test_the_smoke_suite_on_a_cluster_matches_the_local_executor(tmp_path, cluster):
    c, node_of = cluster
    local = run_suite(smoke(tmp_path, "local", floors=False), targets=TARGETS)  # floors: more of the same cells
    assert not local.failed
    summary = run_suite(smoke(tmp_path, "ray", floors=False), targets=TARGETS, executor=RayExecutor(address=c.address))
    assert not summary.failed and summary.written
    records = list(RunDir(summary.run_dir).cells())
    models = {r.key.model for r in records}
    assert models == {"beexformer", "fp32"}
    assert len(records) == len(models) * len(TARGETS) and all(r.status == "ok" for r in records)
    for r in records:  # measured on the node advertising the cell's target, and says so
        node = r.environment["node"]
        assert node["ray_node_id"] == node_of[r.key.target], (r.key.slug, node)
        assert r.target["name"] == r.key.target and node["name"] and node["cpu"]
    # trained once per model: one checkpoint folder each, shared by both targets' cells
    store = tmp_path / "ray" / "models" / "tiny"
    assert sorted(p.name for p in store.iterdir()) == sorted(models)
    assert all(len(list((store / m).iterdir())) == 1 for m in models)
    by_model = {}
    for r in records:
        by_model.setdefault(r.key.model, set()).add(r.model["checkpoint"])
        assert r.model["trained_this_run"] is True
    assert all(len(paths) == 1 for paths in by_model.values())
    # the same seeds give the same models, so the same accuracies as in this process
    assert accuracies(summary.run_dir) == accuracies(local.run_dir)
    # the run remembers its targets and executor, so --resume finishes it on the same ones
    doc = RunDir(summary.run_dir).read_run()
    assert doc["targets"] == TARGETS and doc["executor"] == "ray"
    again = run_suite(smoke(tmp_path, "ray", floors=False), resume_dir=summary.run_dir, executor=RayExecutor(address=c.address))
    assert not again.written and len(again.skipped) == len(records)
    # a store copied from elsewhere (--models-from): the nodes measure it, nothing trains
    copied = run_suite(smoke(tmp_path, "from", floors=False, models_from=str(tmp_path / "ray" / "models")), targets=["cpu"],
                       executor=RayExecutor(address=c.address))
    measured = list(RunDir(copied.run_dir).cells())
    assert not copied.failed and len(measured) == len(models)
    assert all(r.model["trained_this_run"] is False for r in measured)
    assert accuracies(copied.run_dir) == {k: v for k, v in accuracies(local.run_dir).items() if k[1] == "cpu"}


def _kill_a_measuring_worker(done: threading.Event, killed: list[int], deadline_s: float = 150.0) -> None:
    """SIGKILL the Ray worker that runs a cell's measurement (the parent of its isolated measuring
    process, which is killed too, as a lost machine would take it), once."""
    import psutil

    end = time.monotonic() + deadline_s
    while not done.is_set() and time.monotonic() < end:
        for proc in psutil.process_iter(["cmdline"]):
            if "beexbench._measure_worker" in " ".join(proc.info["cmdline"] or []):
                try:
                    parent = proc.parent()
                    if parent is None or not parent.cmdline()[0].startswith("ray::"):
                        continue
                    killed.append(parent.pid)
                    os.kill(parent.pid, signal.SIGKILL)
                    proc.kill()
                except (psutil.Error, IndexError, ProcessLookupError):
                    continue
                return
        time.sleep(0.1)


@pytest.mark.timeout(150)
def test_a_worker_killed_mid_measurement_is_retried_and_its_cell_recorded_once(tmp_path, cluster):
    c, node_of = cluster
    # isolated latency: each thread setting in a fresh process, which the test finds and kills
    cfg = smoke(tmp_path, "fault", models=["fp32"], floors=False, latency={**FAST, "isolate": True})
    done, killed = threading.Event(), []
    killer = threading.Thread(target=_kill_a_measuring_worker, args=(done, killed), daemon=True)
    killer.start()
    try:
        summary = run_suite(cfg, targets=["cpu"], executor=RayExecutor(address=c.address))
    finally:
        done.set()
        killer.join(5)
    assert killed, "no measuring worker was found to kill"
    assert not summary.failed
    files = sorted((summary.run_dir / "cells").glob("*.json"))
    assert len(files) == 1 and len(summary.written) == 1
    record = json.loads(files[0].read_text())
    assert record["status"] == "ok" and record["environment"]["node"]["ray_node_id"] == node_of["cpu"]


class _Recorder:
    """A Progress that keeps what the driver shows."""

    def __init__(self) -> None:
        self.fields: list[dict] = []
        self.lines: list[str] = []

    def task(self, description, total=None):
        from contextlib import contextmanager

        recorder = self

        class Handle:
            def advance(self, n=1, **fields):
                recorder.fields.append(fields)

        @contextmanager
        def cm():
            yield Handle()

        return cm()

    def log(self, message):
        self.lines.append(message)


@pytest.mark.timeout(120)
def test_a_target_no_node_advertises_fails_its_cells_after_the_wait(tmp_path, cluster):
    c, _ = cluster
    cfg = smoke(tmp_path, "unplaced", models=["majority"], floors=False)
    progress = _Recorder()
    start = time.monotonic()
    summary = run_suite(cfg, progress, targets=["cpu", "edge-1t"], executor=RayExecutor(address=c.address, node_wait_s=3))
    assert time.monotonic() - start < 60
    assert [k.target for k, _ in summary.failed] == ["edge-1t"]
    error = summary.failed[0][1]
    assert "no live node of the Ray cluster advertises target 'edge-1t'" in error and "beexbench worker --targets edge-1t" in error
    by_target = {r.key.target: r for r in RunDir(summary.run_dir).cells()}
    assert by_target["cpu"].status == "ok" and by_target["edge-1t"].status == "failed"
    last = progress.fields[-1]  # the driver's one view over every cell, by state and by node
    assert last["done"] == 1 and last["failed"] == 1 and last["queued"] == last["measuring"] == 0
    assert last["nodes"] == f"{by_target['cpu'].environment['node']['name']}:1"
    assert not RunDir(summary.run_dir).finished  # a failed cell leaves the run to --resume


@pytest.mark.timeout(150)
def test_a_killed_driver_loses_no_finished_cell(tmp_path, cluster):
    """The driver SIGKILLed once a cell is written; the same command again finishes the same run
    without touching what was written."""
    import subprocess
    import sys

    from conftest import write_tiny_suite

    c, _ = cluster
    suite = write_tiny_suite(tmp_path, models=("majority", "bow-linear", "fp32"))
    argv = ["run", "--config", str(suite), "--executor", "ray", "--ray-address", c.address]
    driver = subprocess.Popen([sys.executable, "-m", "beexbench.cli", *argv], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    cells = tmp_path / "results"
    try:
        end = time.monotonic() + 100
        while time.monotonic() < end and not list(cells.glob("*/cells/*.json")) and driver.poll() is None:
            time.sleep(0.05)
        driver.send_signal(signal.SIGKILL)
        driver.wait(10)
    finally:
        if driver.poll() is None:
            driver.kill()
    before = {p.name: p.read_bytes() for p in cells.glob("*/cells/*.json")}
    assert before, "the driver wrote no cell before it was killed"
    cfg = load_config(config_file=suite)
    summary = run_suite(cfg, executor=RayExecutor(address=c.address))  # the same job: resumes its unfinished run
    assert not summary.failed and len(summary.skipped) == len(before)
    after = {p.name: p.read_bytes() for p in summary.run_dir.glob("cells/*.json")}
    assert len(after) == 3 and all(after[name] == data for name, data in before.items())
    assert RunDir(summary.run_dir).finished
