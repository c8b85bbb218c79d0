"""Energy of a block of work, with its provenance.

    with track_energy("cpu", n_samples=len(batch)) as energy:
        model(batch)
    energy.record.joules_per_sample, energy.record.provenance

Order of preference:

1. ``measured:rapl`` / ``measured:nvml`` -- the target's energy counter. Idle power is measured with
   the same counter for ``idle_seconds`` just before the work and subtracted:
   ``joules = joules_raw - idle_watts * duration_s``.
2. ``estimated:tdp-share`` -- no counter: this process's CPU time (user + system) times the TDP's
   share per logical core, ``joules = cpu_seconds * tdp_watts / logical_cores``. TDP comes from
   ``BEEXBENCH_CPU_TDP_W`` or a small table of vendor-published TDPs keyed on the CPU model. Only on
   targets where CPU time is where the work happens (not on GPUs).
3. ``unavailable`` -- ``joules`` is None and ``inputs["reason"]`` says why. Never a silent zero.
"""
from __future__ import annotations

import os
import time
from contextlib import contextmanager
from typing import Any, Iterator, Mapping

import psutil

from beexbench import settings

from beexbench.profilers._stats import Pending
from beexbench.results.costs import ENERGY_PROVENANCES, Energy
from beexbench.targets import CounterUnavailable, Target, get_target

PROVENANCES = ENERGY_PROVENANCES
TDP_ENV = settings.CPU_TDP_W

# Vendor-published TDP (W) by CPU model substring, matched case-insensitively, longest first.
# Deliberately small: an unknown model gives "unavailable", not a guess.
CPU_TDP_WATTS: dict[str, float] = {
    "Xeon Platinum 8375C": 300.0,
    "Xeon Platinum 8259CL": 210.0,
    "Xeon Platinum 8175M": 240.0,
    "Xeon Gold 6248": 150.0,
    "EPYC 7763": 280.0,
    "EPYC 7B13": 280.0,
    "EPYC 9654": 360.0,
    "Ryzen 9 5950X": 105.0,
    "Ryzen 7 5800X": 105.0,
    "Core(TM) i9-9900K": 95.0,
    "Core(TM) i7-8700": 65.0,
    "Core(TM) i7-1165G7": 28.0,
    "Core(TM) i5-1135G7": 28.0,
}

# Shortest window each counter resolves well (RAPL updates ~1 ms; NVML's energy is coarser).
_MIN_WINDOW_S = {"measured:rapl": 0.05, "measured:nvml": 1.0}


EnergyRecord = Energy  # the profiler's record is the result's own section


# -- arithmetic (pure, tested by hand) -----------------------------------------------------------
def idle_watts(idle_joules: float, idle_seconds: float) -> float:
    return idle_joules / idle_seconds


def net_of_idle(joules_raw: float, idle_w: float, duration_s: float) -> tuple[float, list[str]]:
    """``joules_raw - idle_w * duration_s``; floored at 0 with a warning when idle noise exceeds it."""
    idle_j = idle_w * duration_s
    net = joules_raw - idle_j
    warnings = []
    if net < 0:
        warnings.append(f"work energy is below the idle baseline ({joules_raw:.3g} J raw vs "
                        f"{idle_j:.3g} J idle): too little work to resolve, net set to 0")
        net = 0.0
    elif joules_raw > 0 and net < 0.1 * joules_raw:
        warnings.append(f"net energy is under 10% of the raw counter delta ({net:.3g} of "
                        f"{joules_raw:.3g} J): dominated by idle power, so noisy")
    return net, warnings


def tdp_share_joules(cpu_seconds: float, tdp_watts: float, logical_cores: int) -> float:
    """CPU time x the TDP's share per logical core."""
    return cpu_seconds * tdp_watts / logical_cores


def lookup_tdp(cpu_model: str, env: Mapping[str, str] | None = None) -> tuple[float | None, str]:
    """``(watts, source)`` from the environment variable or the table; ``(None, reason)`` otherwise."""
    try:
        watts = settings.cpu_tdp_watts(env)
    except settings.SettingError as exc:
        return None, str(exc)
    if watts is not None:
        return watts, f"env:{TDP_ENV}"
    model = cpu_model.lower()
    for key in sorted(CPU_TDP_WATTS, key=len, reverse=True):
        if key.lower() in model:
            return CPU_TDP_WATTS[key], f"table:{key}"
    return None, f"CPU model {cpu_model!r} is not in the TDP table; set {TDP_ENV} to its TDP in watts"


# -- the context manager -----------------------------------------------------------------------
@contextmanager
def track_energy(
    target: Target | str = "cpu",
    n_samples: int | None = None,
    *,
    idle_seconds: float = 0.5,
    tdp_watts: float | None = None,
) -> Iterator[Pending[EnergyRecord]]:
    """Measure (or estimate) the energy of the block; ``.record`` is set when it exits normally.

    ``idle_seconds`` of idle power are measured before the block when a counter exists.
    ``tdp_watts`` overrides the TDP lookup for the estimate.
    """
    target = get_target(target).require_available()
    pending: Pending[EnergyRecord] = Pending("energy")
    base_warnings = []
    if target.emulated:
        base_warnings.append(f"{target.name} is emulated: this is the host's energy, not the emulated device's")
    try:
        counter = target.energy_meter()
        counter_reason = ""
    except CounterUnavailable as err:
        counter, counter_reason = None, str(err)

    if counter is not None:
        idle0 = counter.read()
        t_idle = time.perf_counter()
        time.sleep(idle_seconds)
        idle1 = counter.read()
        idle_w = idle_watts(counter.total(idle1) - counter.total(idle0), time.perf_counter() - t_idle)
        r0 = counter.read()
        t0 = time.perf_counter()
        yield pending
        target.synchronize()
        r1 = counter.read()
        duration = time.perf_counter() - t0
        pending._set(_measured(counter, r0, r1, idle_w, idle_seconds, duration, n_samples, target,
                               base_warnings))
        return

    proc = psutil.Process()
    c0 = proc.cpu_times()
    t0 = time.perf_counter()
    yield pending
    target.synchronize()
    c1 = proc.cpu_times()
    duration = time.perf_counter() - t0
    cpu_seconds = (c1.user - c0.user) + (c1.system - c0.system)
    pending._set(_estimated(cpu_seconds, duration, n_samples, target, counter_reason, tdp_watts,
                            base_warnings))


def _per_sample(joules: float | None, n_samples: int | None) -> float | None:
    return joules / n_samples if joules is not None and n_samples else None


def _measured(counter, r0, r1, idle_w, idle_seconds, duration, n_samples, target, warnings) -> EnergyRecord:
    domains = {k: r1[k] - r0[k] for k in r1}
    raw = counter.total(r1) - counter.total(r0)
    net, notes = net_of_idle(raw, idle_w, duration)
    warnings = list(warnings) + notes
    if duration < _MIN_WINDOW_S.get(counter.provenance, 0):
        warnings.append(f"the block lasted {duration * 1e3:.0f} ms, short for {counter.provenance}; "
                        "measure more samples in one block")
    scope = {"measured:rapl": "CPU packages + DRAM of the whole machine (all processes)",
             "measured:nvml": "the whole GPU board"}.get(counter.provenance, "")
    return EnergyRecord(
        joules=net, joules_per_sample=_per_sample(net, n_samples), idle_watts=idle_w,
        provenance=counter.provenance,
        inputs={"idle_seconds": idle_seconds, "scope": scope,
                "formula": "joules_raw - idle_watts * duration_s"},
        domains=domains, warnings=tuple(warnings), joules_raw=raw, duration_s=duration,
        n_samples=n_samples, target=target.name,
    )


def _estimated(cpu_seconds, duration, n_samples, target, counter_reason, tdp_override, warnings) -> EnergyRecord:
    from beexbench.profilers.environment import cpu_model

    warnings = list(warnings)
    inputs: dict[str, Any] = {"counter_unavailable": counter_reason, "cpu_seconds": cpu_seconds}
    if not target.cpu_time_energy_estimate:
        reason = f"no energy counter on {target.name} ({counter_reason}) and CPU time does not cover its work"
        return _unavailable(reason, inputs, duration, n_samples, target, warnings)
    model = cpu_model()
    if tdp_override is not None:
        tdp, source = float(tdp_override), "argument"
    else:
        tdp, source = lookup_tdp(model)
    if tdp is None:
        return _unavailable(f"no energy counter ({counter_reason}) and no TDP: {source}",
                            {**inputs, "cpu_model": model}, duration, n_samples, target, warnings)
    cores = psutil.cpu_count(logical=True) or os.cpu_count() or 1
    joules = tdp_share_joules(cpu_seconds, tdp, cores)
    warnings.append(f"estimated, not measured: TDP share ({tdp:g} W / {cores} logical cores) x "
                    f"{cpu_seconds:.3g} s CPU time; assumes full-TDP cores, no idle or DRAM")
    if cpu_seconds < 0.5:
        warnings.append(f"only {cpu_seconds:.2f} s of CPU time, which the OS counts in ~10 ms ticks: "
                        "the estimate is coarse; measure more samples in one block")
    inputs.update(tdp_watts=tdp, tdp_source=source, cores=cores, cpu_model=model,
                  formula="cpu_seconds * tdp_watts / cores")
    return EnergyRecord(
        joules=joules, joules_per_sample=_per_sample(joules, n_samples), idle_watts=None,
        provenance="estimated:tdp-share", inputs=inputs, warnings=tuple(warnings),
        duration_s=duration, n_samples=n_samples, target=target.name,
    )


def _unavailable(reason, inputs, duration, n_samples, target, warnings) -> EnergyRecord:
    return EnergyRecord(
        joules=None, joules_per_sample=None, idle_watts=None, provenance="unavailable",
        inputs={**inputs, "reason": reason}, warnings=tuple(warnings) + (f"energy unavailable: {reason}",),
        duration_s=duration, n_samples=n_samples, target=target.name,
    )
