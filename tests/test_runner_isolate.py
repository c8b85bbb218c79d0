"""Measurement isolation: every thread setting a target lists is measured in a fresh process
whose threads and OpenMP wait policy are set before torch loads; the headline is the fastest
setting; a warning says when 1 thread beats them all; what cannot be isolated says so."""
from __future__ import annotations

import pytest
import torch

from beexbench.adapters.base import TaskSpec
from beexbench.adapters.registry import ADAPTERS, create_model, register_model
from beexbench.config import LatencySettings
from beexbench.errors import BeexError
from beexbench.results.metrics import Latency, Memory
from beexbench.runner.isolate import measure_speed_by_threads, wakeup_warnings
from beexbench.runner.measure import Speed
from beexbench.targets import get_target
from beexbench.targets.base import usable_cpus
from beexbench.training.batches import EncodedSplit
from records import latency_doc, metrics_doc

SPEC = TaskSpec(task="iso", num_labels=2, vocab_size=40, max_len=16)
SMALL = {"encoder": {"d_model": 16, "n_heads": 2, "n_blocks": 2, "d_ff": 32}}
QUICK = dict(warmup=1, min_iters=3, min_seconds=0.0, max_seconds=5.0, batch_sizes=[1, 2], samples=4)


def split(n: int = 8) -> EncodedSplit:
    g = torch.Generator().manual_seed(0)
    lengths = torch.randint(3, SPEC.max_len + 1, (n,), generator=g)
    mask = torch.arange(SPEC.max_len)[None, :] < lengths[:, None]
    return EncodedSplit(torch.randint(1, SPEC.vocab_size, (n, SPEC.max_len), generator=g) * mask, mask,
                        torch.zeros(n, dtype=torch.long))


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    adapter = create_model("fp32", SPEC, SMALL, seed=0)
    path = adapter.save(tmp_path_factory.mktemp("ckpt") / "fp32")
    return adapter, path


def test_each_thread_setting_runs_in_a_fresh_process_with_the_targets_environment(saved):
    adapter, ckpt = saved
    target = get_target("cpu")
    assert target.thread_settings() == sorted({1, target.threads})
    parent_threads = torch.get_num_threads()
    speed, records, warnings = measure_speed_by_threads(adapter, ckpt, split(), target, {}, LatencySettings(**QUICK),
                                                        energy=False)
    # batch 1 and batch 2 at every setting, each from its own process
    assert sorted((r.threads, r.batch_size) for r in records) == sorted(
        (t, b) for t in target.thread_settings() for b in (1, 2))
    assert all(r.isolated for r in records)
    # the parent (this test) waits PASSIVE (conftest imports beexbench first): the workers got the target's policy
    assert target.wait_policy == "ACTIVE" and {r.wait_policy for r in records} == {"ACTIVE"}
    batch1 = {r.threads: r.median for r in records if r.batch_size == 1}
    assert speed.batch1.median == min(batch1.values()) and speed.batch1.threads == min(batch1, key=batch1.get)
    assert speed.batch_sweep[0].threads == speed.batch1.threads  # the sweep of the same setting
    assert torch.get_num_threads() == parent_threads
    assert not any("own process" in w for w in warnings)


def test_the_wait_policy_is_the_targets_not_the_parents(saved):
    adapter, ckpt = saved
    target = get_target("cpu", threads=1)
    target.wait_policy = "PASSIVE"
    assert target.thread_settings() == [1]  # an explicit thread count is the only setting
    _, records, _ = measure_speed_by_threads(adapter, ckpt, split(), target, {"threads": 1},
                                             LatencySettings(**{**QUICK, "batch_sizes": [1]}), energy=False)
    assert [(r.threads, r.wait_policy, r.isolated) for r in records] == [(1, "PASSIVE", True)]


def test_edge_targets_list_one_thread_and_their_own_count():
    edge = get_target("edge-2t")
    assert edge.thread_settings() == sorted({1, edge.threads})
    one = edge.with_threads(1)
    assert one.threads == 1 and edge.threads == min(2, len(usable_cpus()))
    if edge.cores is not None:
        assert one.cores == edge.cores[:1]


def test_in_process_measurement_is_labelled(saved):
    adapter, ckpt = saved
    target = get_target("cpu", threads=1)
    _, records, warnings = measure_speed_by_threads(adapter, ckpt, split(), target, {"threads": 1},
                                                    LatencySettings(**{**QUICK, "batch_sizes": [1], "isolate": False}),
                                                    energy=False)
    assert [r.isolated for r in records] == [False]
    assert any("run's own process" in w for w in warnings)


def test_a_model_registered_at_run_time_is_measured_in_process_and_says_why(saved, tmp_path):
    cls = ADAPTERS.get("fp32")

    @register_model("fp32-registered-here")
    class Here(cls):
        pass

    try:
        adapter = create_model("fp32-registered-here", SPEC, SMALL, seed=0)
        ckpt = adapter.save(tmp_path / "here")
        _, records, warnings = measure_speed_by_threads(adapter, ckpt, split(), get_target("cpu", threads=1),
                                                        {"threads": 1}, LatencySettings(**{**QUICK, "batch_sizes": [1]}),
                                                        energy=False)
    finally:
        ADAPTERS.unregister("fp32-registered-here")
    assert [r.isolated for r in records] == [False]
    assert any("registered at run time" in w for w in warnings)


def test_a_failed_worker_is_one_line_naming_the_setting(saved, tmp_path):
    adapter, _ = saved
    (tmp_path / "empty").mkdir()
    with pytest.raises(BeexError, match=r"isolated measurement at 1 thread\(s\) failed \(exit 1\): .*") as err:
        measure_speed_by_threads(adapter, tmp_path / "empty", split(), get_target("cpu", threads=1), {"threads": 1},
                                 LatencySettings(**{**QUICK, "batch_sizes": [1]}), energy=False)
    assert "\n" not in str(err.value)


def _speed(median: float, threads: int) -> Speed:
    m = metrics_doc()
    lat = Latency.from_dict(latency_doc(median, threads=threads))
    return Speed(batch1=lat, energy=None, memory=Memory.from_dict(m["memory"]), batch_sweep=(), seq_len_sweep=())


def test_wakeup_warning_when_one_thread_beats_the_others():
    (warning,) = wakeup_warnings({1: _speed(1.0, 1), 2: _speed(1.5, 2)})
    assert "1.5x faster than 2 threads" in warning and "headline uses 1 thread" in warning
    assert "thread wake-up" in warning and "loaded machine" in warning  # both causes give these figures: both named
    assert wakeup_warnings({1: _speed(1.0, 1), 2: _speed(1.05, 2)}) == []  # within the margin: noise
    assert wakeup_warnings({1: _speed(1.0, 1), 2: _speed(0.6, 2)}) == []
    assert wakeup_warnings({2: _speed(1.0, 2)}) == []
