"""Energy: idle subtraction and TDP-share arithmetic by hand, provenance labels, fallbacks."""
from __future__ import annotations

import dataclasses
import time

import pytest

from beexbench.profilers import energy as E
from beexbench.profilers.energy import EnergyRecord, track_energy
from beexbench.targets import CounterUnavailable, CpuTarget


class FakeCounter:
    """Draws a constant ``watts`` over wall time, plus whatever the test adds as 'work'."""

    provenance = "measured:rapl"

    def __init__(self, watts: float) -> None:
        self.watts, self.extra, self.t0 = watts, 0.0, time.perf_counter()

    def read(self):
        return {"package-0": self.watts * (time.perf_counter() - self.t0) + self.extra}

    def total(self, reading):
        return reading["package-0"]


class FakeCpu(CpuTarget):
    def __init__(self, counter=None, **kw):
        super().__init__(threads=1, **kw)
        self.counter = counter

    def energy_meter(self):
        if self.counter is None:
            raise CounterUnavailable("no counter in this test")
        return self.counter


def test_idle_subtraction_by_hand():
    assert E.idle_watts(idle_joules=6.0, idle_seconds=0.5) == 12.0
    net, warnings = E.net_of_idle(joules_raw=50.0, idle_w=12.0, duration_s=2.0)
    assert net == 26.0 and warnings == []  # 50 - 12 * 2


def test_net_below_idle_is_zero_with_warning_never_silent():
    net, warnings = E.net_of_idle(joules_raw=1.0, idle_w=10.0, duration_s=1.0)
    assert net == 0.0 and "below the idle baseline" in warnings[0]
    net, warnings = E.net_of_idle(joules_raw=10.0, idle_w=9.5, duration_s=1.0)
    assert net == pytest.approx(0.5) and "under 10%" in warnings[0]


def test_tdp_share_by_hand():
    # 3 s of CPU time on a 65 W, 8-logical-core CPU: 3 * 65 / 8
    assert E.tdp_share_joules(cpu_seconds=3.0, tdp_watts=65.0, logical_cores=8) == pytest.approx(24.375)


def test_tdp_lookup_env_table_and_unknown():
    assert E.lookup_tdp("anything", env={"BEEXBENCH_CPU_TDP_W": "45"}) == (45.0, "env:BEEXBENCH_CPU_TDP_W")
    assert E.lookup_tdp("AMD EPYC 7763 64-Core Processor", env={}) == (280.0, "table:EPYC 7763")
    watts, reason = E.lookup_tdp("AMD EPYC", env={})
    assert watts is None and "BEEXBENCH_CPU_TDP_W" in reason
    assert E.lookup_tdp("x", env={"BEEXBENCH_CPU_TDP_W": "abc"})[0] is None
    assert E.lookup_tdp("x", env={"BEEXBENCH_CPU_TDP_W": "-3"})[0] is None


def test_measured_path_subtracts_idle_power():
    counter = FakeCounter(watts=20.0)
    with track_energy(FakeCpu(counter), n_samples=5, idle_seconds=0.1) as e:
        time.sleep(0.1)
        counter.extra += 3.0  # the work's own energy
    rec = e.record
    assert rec.provenance == "measured:rapl"
    assert rec.idle_watts == pytest.approx(20.0, rel=0.05)
    assert rec.joules_raw == pytest.approx(3.0 + 20.0 * rec.duration_s, rel=0.02)
    assert rec.joules == pytest.approx(rec.joules_raw - rec.idle_watts * rec.duration_s)
    assert rec.joules == pytest.approx(3.0, abs=0.15)
    assert rec.joules_per_sample == pytest.approx(rec.joules / 5)
    assert rec.inputs["idle_seconds"] == 0.1


def test_estimate_carries_inputs_and_label(monkeypatch):
    monkeypatch.setenv("BEEXBENCH_CPU_TDP_W", "64")
    with track_energy(FakeCpu(), n_samples=2) as e:
        t = time.process_time()
        while time.process_time() - t < 0.1:
            pass
    rec = e.record
    assert rec.provenance == "estimated:tdp-share"
    i = rec.inputs
    assert i["tdp_watts"] == 64.0 and i["tdp_source"] == "env:BEEXBENCH_CPU_TDP_W"
    assert i["cpu_seconds"] >= 0.05
    assert rec.joules == pytest.approx(i["cpu_seconds"] * 64.0 / i["cores"])
    assert rec.joules_per_sample == pytest.approx(rec.joules / 2)
    assert rec.idle_watts is None and any("estimated" in w for w in rec.warnings)


def test_no_counter_no_tdp_is_unavailable_not_zero(monkeypatch):
    monkeypatch.delenv("BEEXBENCH_CPU_TDP_W", raising=False)
    monkeypatch.setattr("beexbench.profilers.environment.cpu_model", lambda: "Mystery CPU 9000")
    with track_energy(FakeCpu(), n_samples=1) as e:
        pass
    rec = e.record
    assert rec.provenance == "unavailable" and rec.joules is None and rec.joules_per_sample is None
    assert "TDP" in rec.inputs["reason"] and rec.warnings


def test_gpu_like_target_without_counter_is_unavailable(monkeypatch):
    monkeypatch.setenv("BEEXBENCH_CPU_TDP_W", "100")
    target = FakeCpu()
    target.cpu_time_energy_estimate = False
    with track_energy(target) as e:
        pass
    assert e.record.provenance == "unavailable" and "CPU time does not cover" in e.record.inputs["reason"]


def test_emulated_target_energy_is_flagged(monkeypatch):
    monkeypatch.setenv("BEEXBENCH_CPU_TDP_W", "100")
    with track_energy("edge-1t") as e:
        pass
    assert any("emulated" in w for w in e.record.warnings)


def test_record_is_frozen_and_round_trips():
    rec = EnergyRecord(joules=1.5, joules_per_sample=0.5, idle_watts=3.0, provenance="measured:rapl",
                       inputs={"idle_seconds": 0.5}, domains={"package-0": 2.0}, joules_raw=2.0,
                       duration_s=0.1, n_samples=3)
    with pytest.raises(dataclasses.FrozenInstanceError):
        rec.joules = 2.0
    with pytest.raises(TypeError):
        rec.inputs["x"] = 1
    assert EnergyRecord.from_dict(rec.to_dict()) == rec
    with pytest.raises(ValueError):
        EnergyRecord(joules=None, joules_per_sample=None, idle_watts=None, provenance="measured:rapl")
    with pytest.raises(ValueError):
        EnergyRecord(joules=1.0, joules_per_sample=None, idle_watts=None, provenance="guessed")


def test_record_only_after_block():
    with track_energy(FakeCpu(FakeCounter(1.0)), idle_seconds=0.01) as e:
        with pytest.raises(RuntimeError, match="after the `with` block"):
            e.record
