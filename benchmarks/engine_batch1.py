"""Batch-1 latency of the packed engine's whole-model op at one thread, for one instruction set.

    OMP_NUM_THREADS=1 python benchmarks/engine_batch1.py [auto|avx512|avx2|portable]

Compare two trees (e.g. before and after a change to ``beexbench/engine/_engine.cpp``) by running it
alternately with ``PYTHONPATH=<tree>`` from a folder outside both: each tree builds (and caches) its
own engine, keyed by the source's checksum. Untrained models with fixed seeds (d64: the default
suite's width; d384: MiniLM's), 48 tokens, no early exit (every block runs); prints the median and
the minimum of 7 repeats of 200 calls, in ms.
"""
import statistics
import sys
import time

import torch

from beexbench.adapters.base import TaskSpec
from beexbench.adapters.registry import create_model, get_adapter_class
from beexbench.engine import _native
from beexbench.models.exits import ExitRule

torch.set_num_threads(1)
SPEC = TaskSpec(task="t", num_labels=2, vocab_size=2000, max_len=64)
CONFIGS = {"d64": {"d_model": 64, "n_heads": 4, "n_blocks": 4, "d_ff": 128},
           "d384": {"d_model": 384, "n_heads": 6, "n_blocks": 6, "d_ff": 1536}}


def main() -> None:
    ops = _native.ops()
    if ops is None:
        sys.exit("the native engine is not available here")
    print("isa", ops.engine_isa(sys.argv[1] if len(sys.argv) > 1 else "auto"))
    for name, enc in CONFIGS.items():
        torch.manual_seed(0)
        float_model = create_model("beexformer", SPEC, {"encoder": enc})
        float_model.module().eval()
        packed = get_adapter_class("beexformer-packed").derive(float_model, None).model
        ids = torch.randint(1, SPEC.vocab_size, (1, 48), generator=torch.Generator().manual_seed(0))
        mask, rule = torch.ones(1, 48, dtype=torch.bool), ExitRule()
        with torch.no_grad():
            for _ in range(50):
                packed.infer(ids, mask, rule)
            times = []
            for _ in range(7):
                start = time.perf_counter()
                for _ in range(200):
                    packed.infer(ids, mask, rule)
                times.append((time.perf_counter() - start) / 200 * 1e3)
        print(f"{name} median ms {statistics.median(times):.4f}  min {min(times):.4f}")


if __name__ == "__main__":
    main()
