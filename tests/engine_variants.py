"""Every compiled variant of the packed engine's whole-model loop, for tests that compare them."""
from __future__ import annotations

from collections.abc import Iterator

import torch


def each_isa_and_thread_count(ops) -> Iterator[tuple[str, int]]:
    """Set the engine to each instruction set this CPU runs (portable, AVX2, AVX-512) and torch to
    1 and 2 threads in turn, yielding (isa, threads); the automatic choice and the thread count are
    restored afterwards, also when a check fails."""
    threads = torch.get_num_threads()
    try:
        for isa in ("portable", "avx2", "avx512"):
            try:
                assert ops.engine_isa(isa) == isa
            except RuntimeError:
                continue  # not on this CPU
            for t in (1, 2):
                torch.set_num_threads(t)
                yield isa, t
    finally:
        ops.engine_isa("auto")
        torch.set_num_threads(threads)
