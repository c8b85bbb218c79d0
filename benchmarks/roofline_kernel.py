"""The packed-bit binary product against this host's popcount bound (issue 30), 1 thread.

    python benchmarks/roofline_kernel.py             # the cached roofline (measured once if absent)
    python benchmarks/roofline_kernel.py --refresh   # measure the roofline again first

For each shape M x K x N (128x512x512 and the MiniLM-L6 shapes 24x384x384, 24x384x1536,
24x1536x384) it times ``kernels.binary_linear`` (float activations in, so the activation packing is
included, as a layer runs it) and ``kernels.binary_matmul`` (both operands already packed), and
prints each in binary MAC/s (M*K*N per call) as a share of the bound of the popcount path the
kernels' backend runs (``beexbench.profilers.roofline.KERNEL_BACKEND_PATH``). Median of --reps
timings of --min-s seconds each; run it on a quiet machine (the load average is printed).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SHAPES = ((128, 512, 512), (24, 384, 384), (24, 384, 1536), (24, 1536, 384))


def _time(fn, min_s: float, reps: int) -> float:
    """Median seconds per call over ``reps`` timings of at least ``min_s`` each."""
    fn()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < min_s / 4:
        fn()
        n += 1
    calls = max(1, int(4 * n))
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        times.append((time.perf_counter() - t0) / calls)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--refresh", action="store_true", help="measure the roofline again first")
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--min-s", type=float, default=0.2)
    args = ap.parse_args(argv)

    import torch

    from beexbench import kernels
    from beexbench.profilers.roofline import KERNEL_BACKEND_PATH, host_roofline, share_of_bound

    torch.set_num_threads(1)
    roofline = host_roofline(refresh=args.refresh)
    backend = kernels.backend()
    path = KERNEL_BACKEND_PATH.get(backend)
    if path is None:
        print(f"kernels run {backend!r} ({kernels.fallback_reason()}): no popcount bound applies", file=sys.stderr)
        return 1
    bound = roofline.path(path)
    if bound.unavailable_reason:
        print(f"the {path} bound is unavailable: {bound.unavailable_reason}", file=sys.stderr)
        return 1
    print(f"host: {roofline.cpu}; kernels backend {backend}; bound {path} = {bound.ops_per_s_1t / 1e9:.1f} G binary "
          f"MAC/s on 1 thread (roofline {roofline.key}, measured {roofline.measured_at}); "
          f"load average now {os.getloadavg()[0]:.2f}")
    g = torch.Generator().manual_seed(0)
    print(f"{'M x K x N':>16} {'op':>14} {'µs/call':>9} {'G binary MAC/s':>15} {'share of bound':>15}")
    for m, k, n in SHAPES:
        x = torch.randn(m, k, generator=g)
        w = kernels.pack_rows(torch.randn(n, k, generator=g))
        alpha, bias = torch.rand(n, generator=g), torch.randn(n, generator=g)
        xp = kernels.pack_rows(x)
        for name, fn in (("binary_linear", lambda: kernels.binary_linear(x, w, alpha, bias, k)),
                         ("binary_matmul", lambda: kernels.binary_matmul(xp, w, k))):
            secs = _time(fn, args.min_s, args.reps)
            rate = m * k * n / secs
            print(f"{f'{m}x{k}x{n}':>16} {name:>14} {secs * 1e6:9.1f} {rate / 1e9:15.1f} "
                  f"{100 * share_of_bound(rate, path, roofline=roofline):14.0f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
