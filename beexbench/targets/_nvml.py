"""NVIDIA GPU energy from NVML's total-energy counter (millijoules since driver load, Volta+).

``pynvml`` (package ``nvidia-ml-py``) is imported lazily so CPU-only installs never touch it.
"""
from __future__ import annotations

from typing import Any, Mapping

from beexbench.targets.base import CounterUnavailable


def nvml_handle(device_index: int) -> tuple[Any, Any]:
    """``(pynvml, handle)`` for torch's CUDA device ``device_index``; raises CounterUnavailable.

    Matched by UUID so ``CUDA_VISIBLE_DEVICES`` renumbering cannot pick the wrong GPU.
    """
    try:
        import pynvml
    except ImportError as err:
        raise CounterUnavailable("nvidia-ml-py (pynvml) is not installed") from err
    try:
        pynvml.nvmlInit()
    except Exception as err:  # pynvml.NVMLError and library-not-found errors
        raise CounterUnavailable(f"NVML could not start ({err})") from err
    try:
        import torch

        uuid = str(torch.cuda.get_device_properties(device_index).uuid)
        uuid = uuid if uuid.startswith(("GPU-", "MIG-")) else f"GPU-{uuid}"
        return pynvml, pynvml.nvmlDeviceGetHandleByUUID(uuid)
    except Exception:
        try:
            return pynvml, pynvml.nvmlDeviceGetHandleByIndex(device_index)
        except Exception as err:
            raise CounterUnavailable(f"NVML has no handle for CUDA device {device_index} ({err})") from err


class NvmlCounter:
    """Cumulative joules of one GPU since the counter was opened."""

    provenance = "measured:nvml"

    def __init__(self, device_index: int = 0) -> None:
        self._nvml, self._handle = nvml_handle(device_index)
        self.key = f"gpu-{device_index}"
        try:
            self._start_mj = self._raw()
        except Exception as err:  # NVMLError_NotSupported on pre-Volta GPUs
            raise CounterUnavailable(f"GPU {device_index} has no NVML total-energy counter ({err})") from err

    def _raw(self) -> int:
        return int(self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle))

    def read(self) -> dict[str, float]:
        return {self.key: (self._raw() - self._start_mj) / 1e3}

    def total(self, reading: Mapping[str, float]) -> float:
        return reading[self.key]
