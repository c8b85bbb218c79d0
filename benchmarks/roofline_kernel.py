"""The packed-bit binary product against this host's popcount bound (issue 30), 1 thread.

    python benchmarks/roofline_kernel.py             # the cached roofline (measured once if absent)
    python benchmarks/roofline_kernel.py --refresh   # measure the roofline again first
    python benchmarks/roofline_kernel.py --backends all   # every native backend, side by side

For each shape M x K x N (128x512x512 and the MiniLM-L6 shapes 24x384x384, 24x384x1536,
24x1536x384) it times ``kernels.binary_linear`` (float activations in, so the activation packing is
included, as a layer runs it) and ``kernels.binary_matmul`` (both operands already packed), and
prints each in binary MAC/s (M*K*N per call) as a share of the bound of the instruction path the
kernels' backend runs (``beexbench.profilers.roofline.KERNEL_BACKEND_PATH``: popcount, or int8 VNNI
where one +-1 product is one int8 MAC). Two timings per op: "py" is a call from Python (what a
layer pays, torch dispatch included), "C++" is the same op called back to back from C++
(``time_product``: the kernel with its allocation and checks, no interpreter). "linear, laid": binary_linear
with the weights' layout built once (``kernels.products.binary_layout``, as ``PackedBinaryLinear`` keeps
it), where the backend has one (avx512-vpopcnt's column panel). Median of --reps
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
    ap.add_argument("--backends", default="auto",
                    help="auto (the backend in use), all (every native one here), or a comma list")
    args = ap.parse_args(argv)

    import torch

    from beexbench import kernels
    from beexbench.kernels.products import binary_layout
    from beexbench.profilers.roofline import KERNEL_BACKEND_PATH, host_roofline, share_of_bound

    if kernels.backend() not in KERNEL_BACKEND_PATH:
        print(f"kernels run {kernels.backend()!r} ({kernels.fallback_reason()}): no bound applies", file=sys.stderr)
        return 1
    torch.set_num_threads(1)
    roofline = host_roofline(refresh=args.refresh)
    native = [b for b in kernels.available_backends() if b in KERNEL_BACKEND_PATH]
    if args.backends == "auto":
        names = [kernels.backend()]
    elif args.backends == "all":
        names = native
    else:
        names = [b.strip() for b in args.backends.split(",") if b.strip()]
    bad = [b for b in names if b not in native]
    if bad or not names:
        print(f"kernels run {kernels.backend()!r} ({kernels.fallback_reason()}); no bound applies to "
              f"{', '.join(bad) or 'it'} (native here: {', '.join(native) or 'none'})", file=sys.stderr)
        return 1
    print(f"host: {roofline.cpu}; roofline {roofline.key}, measured {roofline.measured_at}; "
          f"auto picks {kernels.set_backend('auto')}; load average now {os.getloadavg()[0]:.2f}")
    g = torch.Generator().manual_seed(0)
    data = []
    for m, k, n in SHAPES:
        x = torch.randn(m, k, generator=g)
        w = kernels.pack_rows(torch.randn(n, k, generator=g))
        data.append((m, k, n, x, kernels.pack_rows(x), w, torch.rand(n, generator=g), torch.randn(n, generator=g)))
    ops = kernels._State.ops
    print(f"{'backend':>15} {'M x K x N':>13} {'op':>14} {'µs py':>8} {'µs C++':>8} {'G MAC/s C++':>12} "
          f"{'share py':>9} {'share C++':>10}")
    for backend in names:
        kernels.set_backend(backend)
        path = KERNEL_BACKEND_PATH[backend]
        bound = roofline.path(path)
        if bound.unavailable_reason:
            print(f"{backend}: the {path} bound is unavailable: {bound.unavailable_reason}", file=sys.stderr)
            return 1
        print(f"{backend}: bound {path} = {bound.ops_per_s_1t / 1e9:.1f} G MAC/s on 1 thread")
        for m, k, n, x, xp, w, alpha, bias in data:
            laid = binary_layout(w, k)  # the weights as this backend reads them, built once (or None)
            runs = [("binary_linear", lambda: kernels.binary_linear(x, w, alpha, bias, k), (x, w, alpha, bias), None),
                    ("binary_matmul", lambda: kernels.binary_matmul(xp, w, k), (xp, w, alpha, None), None)]
            if laid is not None:
                runs.insert(1, ("linear, laid", lambda: kernels.binary_linear(x, w, alpha, bias, k, layout=laid),
                                (x, w, alpha, bias), laid))
            for name, fn, native_args, layout in runs:
                secs = _time(fn, args.min_s, args.reps)
                reps = max(1, int(args.min_s / max(secs, 1e-7)))
                cpp = statistics.median(ops.time_product(*native_args, k, reps, layout) for _ in range(args.reps))
                rate, rate_cpp = m * k * n / secs, m * k * n / cpp
                print(f"{backend:>15} {f'{m}x{k}x{n}':>13} {name:>14} {secs * 1e6:8.1f} {cpp * 1e6:8.1f} "
                      f"{rate_cpp / 1e9:12.1f} {100 * share_of_bound(rate, path, roofline=roofline):8.0f}% "
                      f"{100 * share_of_bound(rate_cpp, path, roofline=roofline):9.0f}%")
    kernels.set_backend("auto")
    return 0


if __name__ == "__main__":
    sys.exit(main())
