"""An NVIDIA GPU through CUDA: event timing, peak allocated memory, NVML energy."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Callable, Iterator

import torch

from beexbench.targets import _host
from beexbench.targets.base import EnergyCounter, MemoryMeter, Target, physical_cores


class CudaEventTimer:
    """Times a call with a pair of CUDA events recorded after a full synchronisation."""

    name = "cuda_event"

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self._start = torch.cuda.Event(enable_timing=True)
        self._end = torch.cuda.Event(enable_timing=True)

    def __call__(self, fn: Callable[[], Any]) -> float:
        with torch.cuda.device(self.device):
            torch.cuda.synchronize(self.device)
            self._start.record()
            fn()
            self._end.record()
            self._end.synchronize()
        return float(self._start.elapsed_time(self._end))


class CudaPeakMeter:
    """Peak ``torch.cuda.max_memory_allocated`` (and reserved) between start and stop."""

    method = "torch.cuda.max_memory_allocated after reset_peak_memory_stats"

    def __init__(self, device: torch.device) -> None:
        self.device = device

    def start(self) -> None:
        torch.cuda.synchronize(self.device)
        self._baseline = torch.cuda.memory_allocated(self.device)
        torch.cuda.reset_peak_memory_stats(self.device)

    def stop(self) -> dict[str, int]:
        torch.cuda.synchronize(self.device)
        return {
            "device_baseline_allocated_bytes": int(self._baseline),
            "device_peak_allocated_bytes": int(torch.cuda.max_memory_allocated(self.device)),
            "device_peak_reserved_bytes": int(torch.cuda.max_memory_reserved(self.device)),
        }


class _BothMeters:
    def __init__(self, *meters: MemoryMeter) -> None:
        self.meters = meters
        self.method = " + ".join(m.method for m in meters)

    def start(self) -> None:
        for m in self.meters:
            m.start()

    def stop(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for m in reversed(self.meters):
            out.update(m.stop())
        return out


class CudaTarget(Target):
    cpu_time_energy_estimate = False  # the work is on the GPU: CPU time would undercount it

    def __init__(self, index: int = 0, threads: int | None = None, name: str = "cuda") -> None:
        super().__init__()
        self.name = name
        self.index = int(index)
        self.device = torch.device("cuda", self.index)
        self.threads = physical_cores() if threads is None else int(threads)  # host-side ops
        self.description = "NVIDIA GPU via CUDA"

    def available(self) -> tuple[bool, str]:
        if torch.version.cuda is None:
            return False, "no CUDA device (this torch build is CPU-only): use --target cpu"
        if not torch.cuda.is_available():
            return False, "no CUDA device (torch.cuda.is_available() is False): use --target cpu"
        if self.index >= torch.cuda.device_count():
            return False, (
                f"no CUDA device {self.index} (only {torch.cuda.device_count()} visible): use --target cpu"
            )
        return True, ""

    @contextmanager
    def activate(self) -> Iterator[Target]:
        with super().activate(), torch.cuda.device(self.index):
            yield self

    def synchronize(self) -> None:
        torch.cuda.synchronize(self.device)

    def timer(self) -> CudaEventTimer:
        return CudaEventTimer(self.device)

    def energy_meter(self) -> EnergyCounter:
        from beexbench.targets._nvml import NvmlCounter

        return NvmlCounter(self.index)

    def memory_meter(self, interval_s: float = 0.001) -> MemoryMeter:
        return _BothMeters(_host.RssSampler(interval_s), CudaPeakMeter(self.device))

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        if self.available()[0]:
            props = torch.cuda.get_device_properties(self.index)
            out.update(gpu_name=props.name, gpu_memory_bytes=int(props.total_memory),
                       cuda_version=torch.version.cuda, compute_capability=f"{props.major}.{props.minor}")
        return out


def cuda(**overrides) -> CudaTarget:
    """CUDA device ``index`` (default 0)."""
    return CudaTarget(**overrides)

