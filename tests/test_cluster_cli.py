"""The cluster executor's edges that need no Ray cluster: one-line errors (Ray missing, an address
that cannot be reached, an executor option without its executor), ``beexbench worker``'s
``ray start`` command, several targets in one local run, and the training marks a measurement
reads to flag shared cores."""
from __future__ import annotations

import json
import sys
import time

import pytest

from conftest import write_tiny_suite

from beexbench.cli import main
from beexbench.config import load_config
from beexbench.results.store import RunDir
from beexbench.runner import run_suite
from beexbench.runner.executors import busy
from beexbench.results.schema import CellKey
from beexbench.runner.executors.units import closure, training_units
from beexbench.runner.executors.resources import MEASURE, advertised_targets, node_resources, target_resource

pytestmark = pytest.mark.usefixtures("one_thread")


def _cli(capsys, argv):
    try:
        main(argv)
        code = 0
    except SystemExit as exc:
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err.strip()


def test_ray_errors_are_one_line_and_leave_no_run_folder(capsys, tmp_path, monkeypatch):
    suite = write_tiny_suite(tmp_path, models=("majority",))
    base = ["run", "--config", str(suite), "--results", str(tmp_path / "r")]
    with monkeypatch.context() as m:  # restores sys.modules' own entry after: ray is never imported twice
        m.setitem(sys.modules, "ray", None)  # as if the extra were not installed
        code, _, err = _cli(capsys, base + ["--executor", "ray"])
    assert code == 2 and err == "error: --executor ray needs Ray, which is not installed: install the extra: pip install -e '.[ray]'"
    pytest.importorskip("ray", reason="the address check needs Ray: pip install -e '.[ray]'")
    start = time.monotonic()
    code, _, err = _cli(capsys, base + ["--executor", "ray", "--ray-address", "127.0.0.1:1"])
    assert code == 2 and err.startswith("error: cannot reach the Ray cluster at 127.0.0.1:1") and "\n" not in err
    assert time.monotonic() - start < 30
    code, _, err = _cli(capsys, base + ["--ray-address", "127.0.0.1:1"])
    assert code == 2 and "--ray-address is for --executor ray" in err
    code, _, err = _cli(capsys, base + ["--executor", "ray", "--train-cpus", "0"])
    assert code == 2 and err == "error: --train-cpus must be 1 or more (a training task takes whole CPUs), not 0"
    code, _, err = _cli(capsys, base + ["--executor", "slurm"])
    assert code == 2 and "unknown executor 'slurm'" in err
    assert not (tmp_path / "r").exists()


def test_worker_starts_ray_with_the_targets_resources(capsys):
    code, _, err = _cli(capsys, ["worker", "--targets", "cpu,edge-1t", "--address", "10.0.0.1:6379", "--num-cpus", "0",
                                 "--dry-run"])
    assert code == 0
    cmd = err.splitlines()[-1]
    assert " start --address 10.0.0.1:6379 --resources " in cmd and cmd.endswith("--num-cpus 0")
    resources = json.loads(cmd.split("--resources ")[1].split(" --num-cpus")[0].strip("'"))
    assert resources == {"beexbench_target_cpu": 1.0, "beexbench_target_edge-1t": 1.0, MEASURE: 1.0}
    code, _, err = _cli(capsys, ["worker", "--targets", "cpux", "--dry-run"])
    assert code == 2 and "unknown target 'cpux'" in err


def test_resource_names():
    assert target_resource("edge-2t") == "beexbench_target_edge-2t"
    assert target_resource("my board/v2") == "beexbench_target_my_board_v2"
    assert advertised_targets(node_resources(["cpu", "cuda"])) == ["cpu", "cuda"]


def test_models_linked_by_what_they_are_trained_from_share_one_training_task():
    cfg = load_config("smoke")
    task = "rotten_tomatoes"
    assert closure("fp32", cfg, task, 0, "classification") == ["fp32"]
    assert closure("fp32-ort", cfg, task, 0, "classification") == ["fp32", "fp32-ort"]  # derived from fp32
    assert closure("beexformer-kd", cfg, task, 0, "classification") == ["fp32", "beexformer-kd"]  # its teacher
    keys = [CellKey(m, task, t, 0) for m, t in (("beexformer-kd", "cpu"), ("beexformer", "cpu"), ("fp32-ort", "edge-1t"),
                                                 ("fp32", "cpu"), ("majority", "cpu"), ("fp32", "edge-1t"))]
    units = training_units(keys, cfg, {task: "classification"})
    assert sorted((u.models, len(u.cells)) for u in units) == [
        (["beexformer"], 1), (["fp32", "beexformer-kd", "fp32-ort"], 4), (["majority"], 1)]
    other_seed = training_units([CellKey("fp32", task, "cpu", 0), CellKey("fp32", task, "cpu", 1)], cfg, {task: "classification"})
    assert len(other_seed) == 2  # one checkpoint per seed: nothing shared


def test_one_local_run_measures_the_same_models_on_several_targets(tmp_path):
    cfg = load_config(config_file=write_tiny_suite(tmp_path, models=("fp32",)), run_id="two")
    summary = run_suite(cfg, targets=["cpu", "edge-1t"])
    assert not summary.failed and sorted(k.target for k in summary.written) == ["cpu", "edge-1t"]
    records = list(RunDir(summary.run_dir).cells())
    assert len({r.model["checkpoint"] for r in records}) == 1  # trained once, measured on both
    assert {r.environment["target"]["name"] for r in records} == {"cpu", "edge-1t"}
    assert RunDir(summary.run_dir).read_run()["targets"] == ["cpu", "edge-1t"]
    again = run_suite(cfg, resume_dir=summary.run_dir)  # the run's own targets, from run.json
    assert not again.written and len(again.skipped) == 2
    with pytest.raises(Exception, match="first target"):
        run_suite(cfg, targets=["edge-1t", "cpu"])


def test_training_marks_flag_overlapping_measurements(tmp_path):
    with busy.training_mark("fp32 on tiny", folder=tmp_path):
        during = time.time()
        assert busy.overlapping(during - 1, during + 1, folder=tmp_path) == ["fp32 on tiny"]
    after = time.time() + 0.01
    assert busy.overlapping(after, after + 1, folder=tmp_path) == []  # it had ended
    assert busy.overlapping(during - 5, during - 4, folder=tmp_path) == []  # it had not started


def test_a_checkpoint_the_node_cannot_see_fails_the_cell_with_what_to_do(tmp_path):
    """A model store that is not shared: the measuring node must not silently train the model again."""
    from beexbench.runner.executors.ray_tasks import measure_cell

    cfg = load_config(config_file=write_tiny_suite(tmp_path, models=("majority",)))
    task = cfg.tasks[0]
    doc = measure_cell(cfg, CellKey("majority", task, "cpu", 0, "tiny"), {}, cfg.to_dict(),
                       checkpoint=str(tmp_path / "elsewhere" / "majority"))
    assert doc["status"] == "failed" and "is not visible on node" in doc["error"] and "shared filesystem" in doc["error"]
    assert doc["environment"]["node"]["name"] and not (tmp_path / "models").exists()
