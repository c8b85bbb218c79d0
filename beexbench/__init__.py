"""beexbench: train BEExformer and its rivals, measure them honestly, report.

The Python API comes first; the ``beexbench`` CLI is a thin shell over it.
"""
import os as _os

# OpenMP threads that spin while they wait make torch 10-40x slower as soon as another process
# wants the same cores (measured: docs/BENCHMARKS.md); waiting passively costs little on a quiet
# machine. This must be set before torch loads OpenMP, so it only applies when beexbench is
# imported first (the CLI always is); it is recorded in every result's environment.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
