"""Where benchmarks run: ``get_target("cpu" | "cuda" | "edge-1t" | ...)``.

Each target carries the device specifics (timer, synchronisation, memory and energy meters) behind
the small :class:`~beexbench.targets.base.Target` interface.
"""
from beexbench.targets._registry import get_target, list_targets, register_target
from beexbench.targets.base import CounterUnavailable, Target
from beexbench.targets.cpu import CpuTarget
from beexbench.targets.cuda import CudaTarget
from beexbench.targets.edge import EdgeTarget

__all__ = [
    "CounterUnavailable", "CpuTarget", "CudaTarget", "EdgeTarget", "Target",
    "get_target", "list_targets", "register_target",
]
