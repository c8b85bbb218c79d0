"""The typed views of a record's context sections (beexbench.results.context): the keys beexbench
writes read by name; a record lacking one (or holding another type) reads None, never an error."""
from __future__ import annotations

from beexbench.results.context import EnvironmentInfo, ModelInfo, TargetInfo

ENV = {"cpu": {"model": "Test CPU 9000"}, "gpus": [{"name": "H100"}], "node": {"name": "n1", "ray_node_id": "abc"},
       "packages": {"beexbench": "0.1.0"}, "git": {"commit": "abc123"}}


def test_the_written_keys_read_by_name():
    env = EnvironmentInfo.of(ENV)
    assert (env.cpu_model, env.gpu_names, env.node_name, env.ray_node_id, env.beexbench_version, env.git_commit) == \
        ("Test CPU 9000", ("H100",), "n1", "abc", "0.1.0", "abc123")
    model = ModelInfo.of({"name": "m", "description": "d", "role": "ablation of x", "checkpoint": "/c",
                          "trained_this_run": True, "config": {"distill": {"teacher": "fp32"}}})
    assert (model.name, model.description, model.role, model.teacher, model.checkpoint, model.trained_this_run) == \
        ("m", "d", "ablation of x", "fp32", "/c", True)
    assert TargetInfo.of({"device": "cuda:0", "emulated": True}) == TargetInfo("cuda:0", True)


def test_older_or_odd_records_read_the_documented_defaults():
    env = EnvironmentInfo.of({"gpus": "none", "node": None, "git": {"commit": None}})
    assert (env.cpu_model, env.gpu_names, env.node_name, env.ray_node_id, env.git_commit) == (None, (), None, None, None)
    assert ModelInfo.of({"config": {"distill": None}}) == ModelInfo(None, "", "model", None, None, None)
    assert ModelInfo.of(None).role == "model" and TargetInfo.of({}) == TargetInfo("", False)
