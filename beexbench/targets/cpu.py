"""The host CPU: threads chosen (default: physical cores) and recorded, RAPL energy where readable."""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

import torch

from beexbench.errors import BeexError
from beexbench.targets import _rapl
from beexbench.targets.base import EnergyCounter, Target, physical_cores, usable_cpus


class CpuTarget(Target):
    def __init__(
        self,
        threads: int | None = None,
        cores: Iterable[int] | None = None,
        interop_threads: int | None = None,
        rapl_root: Path | str = _rapl.DEFAULT_ROOT,
        name: str = "cpu",
        description: str = "host CPU",
    ) -> None:
        super().__init__()
        self.explicit_threads = threads is not None
        self.name = name
        self.device = torch.device("cpu")
        self.threads = physical_cores() if threads is None else int(threads)
        if self.threads < 1:
            raise BeexError(f"threads must be at least 1 (got {threads})")
        self.cores = tuple(sorted(cores)) if cores is not None else None
        self.interop_threads = interop_threads
        self.rapl_root = Path(rapl_root)
        self.description = description
        usable = len(usable_cpus())
        if self.threads > usable:
            self._note(f"{self.threads} threads on {usable} usable cores: oversubscribed, timings will suffer")

    def thread_settings(self) -> list[int]:
        """1 thread and the target's count (all physical cores unless ``threads`` was given, which
        is then the only setting): at batch 1 one thread often wins, since waking the others per
        op costs more than the work they share."""
        return [self.threads] if self.explicit_threads else sorted({1, self.threads})

    def energy_meter(self) -> EnergyCounter:
        return _rapl.RaplCounter(self.rapl_root)


def cpu(**overrides) -> CpuTarget:
    """Host CPU with one thread per physical core (override ``threads=``, ``cores=``)."""
    return CpuTarget(**overrides)
