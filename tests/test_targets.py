"""Targets: registry, thread/affinity application and restoration, CUDA availability."""
from __future__ import annotations

import json
import os

import pytest
import torch

from beexbench.errors import BeexError, UnknownNameError
from beexbench.targets import CpuTarget, CudaTarget, EdgeTarget, Target, _host, get_target, list_targets

HAS_AFFINITY = hasattr(os, "sched_getaffinity")
HAS_CUDA = torch.cuda.is_available()


def test_registry_lists_builtin_targets():
    names = list_targets()
    assert {"cpu", "cuda", "edge-1t", "edge-2t", "rpi4-like"} <= set(names)
    assert "cpu" in list_targets(available_only=True)


def test_unknown_target_suggests_close_names():
    with pytest.raises(UnknownNameError, match="did you mean edge-1t"):
        get_target("edge1t")


def test_bad_override_is_a_beex_error():
    with pytest.raises(BeexError, match="bad option"):
        get_target("cpu", bogus=1)
    with pytest.raises(BeexError, match="at least 1"):
        get_target("cpu", threads=0)


def test_edge_thread_count_is_fixed():
    assert get_target("edge-2t", threads=2).threads == 2
    with pytest.raises(BeexError, match="thread count is fixed"):
        get_target("edge-1t", threads=4)


def test_target_instance_passes_through():
    t = CpuTarget(threads=1)
    assert get_target(t) is t


@pytest.mark.parametrize("name", [n for n in ["cpu", "edge-1t", "edge-2t", "rpi4-like"]])
def test_every_host_target_describes_itself_json_safely(name):
    t = get_target(name)
    assert isinstance(t, Target)
    d = t.describe()
    json.dumps(d)
    assert d["name"] == name and d["threads"] == t.threads >= 1
    assert d["emulated"] is (name != "cpu")
    assert t.timer()(lambda: None) >= 0.0


def test_cpu_threads_default_and_override():
    import psutil

    assert get_target("cpu").threads == (psutil.cpu_count(logical=False) or os.cpu_count())
    t = get_target("cpu", threads=1)
    with t.activate():
        assert torch.get_num_threads() == 1


def test_edge_1t_applies_and_restores_threads_and_affinity():
    before_threads = torch.get_num_threads()
    before_aff = os.sched_getaffinity(0) if HAS_AFFINITY else None
    t = get_target("edge-1t")
    assert t.emulated and t.threads == 1
    with t.activate():
        assert torch.get_num_threads() == 1
        torch.ones(64, 64) @ torch.ones(64, 64)  # parallel work under the limit still fine
        if HAS_AFFINITY:
            first = min(before_aff)
            assert os.sched_getaffinity(0) == {first}
            # every thread of the process is pinned, not only the caller
            for tid in os.listdir("/proc/self/task"):
                assert os.sched_getaffinity(int(tid)) == {first}
    assert torch.get_num_threads() == before_threads
    if HAS_AFFINITY:
        assert os.sched_getaffinity(0) == before_aff


def test_nested_activation_restores_outer_setting():
    outer, inner = get_target("cpu", threads=2), get_target("edge-1t")
    with outer.activate():
        with inner.activate():
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2


def test_edge_profile_capped_at_usable_cores_with_note():
    t = EdgeTarget("huge-like", 10_000)
    assert t.threads == len(_host.usable_cpus())
    assert any("capped" in n for n in t.describe()["notes"])


def test_pinning_degrades_gracefully_without_sched_setaffinity(monkeypatch):
    monkeypatch.setattr(_host, "PINNING_SUPPORTED", False)
    restore, note = _host.pin_process({0})
    assert restore is None and "pinning unavailable" in note
    import beexbench.targets.edge as edge

    monkeypatch.setattr(edge, "PINNING_SUPPORTED", False)
    t = get_target("edge-1t")
    assert t.cores is None
    assert any("pinning unavailable" in n for n in t.notes)
    with t.activate():
        assert torch.get_num_threads() == 1


def test_cuda_unavailable_gives_clear_error():
    if HAS_CUDA:
        pytest.skip("a GPU is present")
    ok, reason = CudaTarget().available()
    assert not ok and "use --target cpu" in reason
    t = get_target("cuda")  # still built, so it can be listed and described
    assert t.describe()["available"] is False
    assert "cuda" not in list_targets(available_only=True)
    with pytest.raises(BeexError, match="no CUDA device.*use --target cpu"):
        t.require_available()
    with pytest.raises(BeexError, match="no CUDA device.*use --target cpu"):
        with t.activate():
            pass
    from beexbench.profilers.latency import measure_latency
    from beexbench.profilers.memory import track_memory

    with pytest.raises(BeexError, match="no CUDA device"):
        measure_latency(lambda: None, target="cuda")
    with pytest.raises(BeexError, match="no CUDA device"):
        with track_memory("cuda"):
            pass


@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU")
def test_cuda_event_timer_and_memory_meter():
    t = get_target("cuda")
    x = torch.randn(2048, 2048, device=t.device)
    with t.activate():
        timer = t.timer()
        assert timer.name == "cuda_event"
        assert timer(lambda: x @ x) > 0
        meter = t.memory_meter()
        meter.start()
        y = torch.empty(64 * 2**20, dtype=torch.uint8, device=t.device)
        del y
        figures = meter.stop()
    assert figures["device_peak_allocated_bytes"] - figures["device_baseline_allocated_bytes"] >= 64 * 2**20


@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU")
def test_nvml_counter_reads_monotonic_joules():
    from beexbench.targets import CounterUnavailable

    t = get_target("cuda")
    try:
        counter = t.energy_meter()
    except CounterUnavailable as err:
        pytest.skip(f"no NVML energy counter: {err}")
    r0 = counter.read()
    x = torch.randn(4096, 4096, device=t.device)
    for _ in range(50):
        x @ x
    t.synchronize()
    r1 = counter.read()
    assert counter.total(r1) >= counter.total(r0) >= 0
