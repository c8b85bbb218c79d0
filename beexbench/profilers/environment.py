"""What a result was measured on: versions, commit, CPU, GPU, OS, seed, config, time; and noise checks.

Everything here reads, nothing writes. ``capture_environment()`` returns a JSON-safe dict; its
``roofline`` entry is this host's cached roofline summary and key (:mod:`.roofline`), read from the
cache and never measured here (``beexbench roofline`` measures it, once per host).
"""
from __future__ import annotations

import hashlib
import os
import platform
import socket
import subprocess
import sys
import time
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Mapping

import psutil

from beexbench import settings

from ._cpu import _cpuinfo_fields, cpu_flags, cpu_model  # noqa: F401 (re-exported)

PACKAGES = ("torch", "numpy", "pandas", "fvcore", "tokenizers", "psutil", "nvidia-ml-py", "beexbench")
_CPUFREQ = Path("/sys/devices/system/cpu")


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def git_state(path: Path | str | None = None) -> dict[str, Any]:
    """Commit and dirty flag of the git checkout holding ``path`` (this package by default)."""
    cwd = Path(path) if path is not None else Path(__file__).resolve().parent

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return {"commit": None, "dirty": None}
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


def gpu_info() -> list[dict[str, Any]]:
    """Name, memory and driver of each visible NVIDIA GPU (empty without one)."""
    gpus: list[dict[str, Any]] = []
    try:
        import torch

        if torch.cuda.is_available():
            for i in range(torch.cuda.device_count()):
                p = torch.cuda.get_device_properties(i)
                gpus.append({"index": i, "name": p.name, "memory_bytes": int(p.total_memory),
                             "compute_capability": f"{p.major}.{p.minor}", "cuda": torch.version.cuda})
    except Exception:
        pass
    if gpus:
        try:
            import pynvml

            pynvml.nvmlInit()
            driver = pynvml.nvmlSystemGetDriverVersion()
            driver = driver.decode() if isinstance(driver, bytes) else driver
            for g in gpus:
                g["driver"] = driver
        except Exception as err:
            for g in gpus:
                g["driver"] = f"unknown ({type(err).__name__})"
    return gpus


NODE_NAME_ENV = settings.NODE_NAME  # a readable name for this machine (``beexbench worker --node-name``)


def _hostname_sha256() -> str:
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:16]


def node_info(gpus: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The machine a cell ran on, so a report can keep machines apart: its name, CPU model, GPUs
    and, on a Ray cluster, Ray's node id (several nodes of one machine share a host but not an id).

    The hostname itself is not written: result folders are shared and published, and a hostname
    can name a person or an internal network. Its hash tells machines apart; ``name`` is
    ``$BEEXBENCH_NODE_NAME`` when the operator gives one (``beexbench worker --node-name``, which
    may be the hostname if that is fine to publish), else ``host-`` and the hash's first 8 digits."""
    digest = _hostname_sha256()
    gpus = gpu_info() if gpus is None else gpus
    return {
        "name": settings.node_name() or f"host-{digest[:8]}",
        "hostname_sha256": digest,
        "cpu": cpu_model(),
        "gpus": [str(g.get("name")) for g in gpus],
        "ray_node_id": _ray_node_id(),
    }


def _ray_node_id() -> str | None:
    """This process's Ray node id when it runs inside a Ray worker or driver (Ray is never imported here)."""
    ray = sys.modules.get("ray")
    try:
        if ray is not None and ray.is_initialized():
            return ray.get_runtime_context().get_node_id()
    except Exception:  # an older or half-started Ray: the node id is a nicety
        pass
    return None


def capture_environment(target=None, seed: int | None = None,
                        config: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Everything a result must carry about where and how it was produced (JSON-safe)."""
    import torch

    info = _cpuinfo_fields()
    gpus = gpu_info()
    return {
        "timestamp_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "packages": {name: _version(name) for name in PACKAGES},
        "git": git_state(),
        "os": {"system": platform.system(), "release": platform.release(), "platform": platform.platform(),
               "machine": platform.machine()},
        "hostname_sha256": _hostname_sha256(),
        "node": node_info(gpus),
        "cpu": {
            "model": cpu_model(),
            "flags": cpu_flags(info),
            "physical_cores": psutil.cpu_count(logical=False),
            "logical_cores": psutil.cpu_count(logical=True),
            "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        },
        "torch_threads": {"intra_op": torch.get_num_threads(), "inter_op": torch.get_num_interop_threads()},
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "target": target.describe() if target is not None else None,
        "threads_used": target.threads if target is not None else torch.get_num_threads(),
        "gpus": gpus,
        "seed": seed,
        "config": dict(config) if config is not None else None,
        "roofline": _roofline_entry(),
    }


def _roofline_entry() -> dict[str, Any]:
    from .roofline import environment_entry  # reads the cache only: never runs the benchmark

    return environment_entry()


# -- noise -------------------------------------------------------------------------------------
def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def frequency_warnings(cores: list[int], root: Path = _CPUFREQ, samples: int = 5,
                       interval_s: float = 0.02) -> list[str]:
    """Warnings when cpufreq shows a non-performance governor or a moving clock on ``cores``."""
    warnings = []
    governors = {g for c in cores if (g := _read(root / f"cpu{c}/cpufreq/scaling_governor"))}
    if governors - {"performance"}:
        warnings.append(f"CPU frequency scaling is active (governor: {', '.join(sorted(governors))}); "
                        "set the 'performance' governor for stable timings")
    freqs: dict[int, list[int]] = {}
    for i in range(samples):
        for c in cores:
            f = _read(root / f"cpu{c}/cpufreq/scaling_cur_freq")
            if f and f.isdigit():
                freqs.setdefault(c, []).append(int(f))
        if i + 1 < samples:
            time.sleep(interval_s)
    moving = [c for c, fs in freqs.items() if len(fs) > 1 and (max(fs) - min(fs)) > 0.05 * max(fs)]
    if moving:
        warnings.append(f"CPU clock varied by more than 5% within {samples * interval_s * 1e3:.0f} ms on "
                        f"core(s) {moving}: frequency scaling or thermal throttling")
    return warnings


def load_warnings(cores: int, window_s: float = 0.2) -> list[str]:
    """Warnings when other work competes for the CPU."""
    warnings = []
    try:
        load1 = psutil.getloadavg()[0]
    except (AttributeError, OSError):
        load1 = None
    if load1 is not None and load1 > 0.75 * cores:
        warnings.append(f"the machine is loaded: 1-minute load average {load1:.2f} on {cores} cores")
    me = psutil.Process()
    me.cpu_percent(None)
    psutil.cpu_percent(None)
    time.sleep(window_s)
    busy_cores = psutil.cpu_percent(None) / 100 * cores
    mine = me.cpu_percent(None) / 100
    others = busy_cores - mine
    if others > 0.5:
        warnings.append(f"other processes used about {others:.1f} cores during a {window_s:g} s check; "
                        "timings will be noisy")
    return warnings


def noise_warnings(target=None) -> list[str]:
    """Sentences describing why timings on this machine may be noisy (empty when none found)."""
    cores_list = list(target.cores) if target is not None and target.cores else (
        sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1)))
    return frequency_warnings(cores_list) + load_warnings(psutil.cpu_count(logical=True) or 1)
