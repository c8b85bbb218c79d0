"""fp32 nn.Linear vs packed-bit binary_linear, side by side in one process.

    python benchmarks/bench_kernels.py --threads 2
    python benchmarks/bench_kernels.py --threads 2 --json results.json   # or --json - for stdout

Shapes are M x K x N (M activation rows, K in-features, N out-features).
binary_linear gets pre-packed weights; packing the activations is INCLUDED
in its timed call.  Timing: torch.utils.benchmark.Timer.blocked_autorange;
the two implementations are measured in alternating rounds so that
background load on a shared machine hits both alike, and the reported figure
is the median over rounds of each round's median.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
from pathlib import Path

import torch
from torch.utils import benchmark

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import beexbench.kernels as kernels  # noqa: E402

DEFAULT_SHAPES = ["128x512x512", "1x128x128", "64x128x128", "64x128x512", "64x512x128"]


def parse_shape(s: str) -> tuple[int, int, int]:
    try:
        m, k, n = (int(v) for v in s.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"shape must look like MxKxN, got {s!r}") from None
    return m, k, n


def time_stmt(stmt: str, env: dict, min_run_time: float, threads: int) -> float:
    t = benchmark.Timer(stmt=stmt, globals=env, num_threads=threads)
    return t.blocked_autorange(min_run_time=min_run_time).median


def bench_shape(m: int, k: int, n: int, threads: int, rounds: int, min_run_time: float) -> dict:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(m, k, generator=g)
    lin = torch.nn.Linear(k, n).eval()
    w = lin.weight.detach()
    alpha = w.abs().mean(dim=1)
    bias = lin.bias.detach()
    wp = kernels.pack_rows(w)
    env = {"lin": lin, "x": x, "wp": wp, "alpha": alpha, "bias": bias, "k": k,
           "binary_linear": kernels.binary_linear, "torch": torch}
    # sanity: the binary result is what it claims to be
    ref = (torch.where(x >= 0, 1.0, -1.0) @ torch.where(w >= 0, 1.0, -1.0).T) * alpha + bias
    torch.testing.assert_close(kernels.binary_linear(x, wp, alpha, bias, k), ref, atol=1e-3, rtol=1e-4)

    fp, bn = [], []
    for _ in range(rounds):
        with torch.no_grad():
            fp.append(time_stmt("lin(x)", env, min_run_time, threads))
        bn.append(time_stmt("binary_linear(x, wp, alpha, bias, k)", env, min_run_time, threads))
    fp_med, bn_med = statistics.median(fp), statistics.median(bn)
    return {
        "shape": f"{m}x{k}x{n}", "M": m, "K": k, "N": n,
        "fp32_linear_us": fp_med * 1e6,
        "binary_linear_us": bn_med * 1e6,
        "speedup": fp_med / bn_med,
        "fp32_linear_min_us": min(fp) * 1e6,
        "binary_linear_min_us": min(bn) * 1e6,
        "speedup_of_mins": min(fp) / min(bn),
        "rounds": rounds,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch threads")
    ap.add_argument("--shapes", nargs="+", type=parse_shape,
                    default=[parse_shape(s) for s in DEFAULT_SHAPES], metavar="MxKxN")
    ap.add_argument("--rounds", type=int, default=5, help="alternating measurement rounds")
    ap.add_argument("--min-run-time", type=float, default=0.2, help="seconds per blocked_autorange")
    ap.add_argument("--backend", default=None,
                    help="force a kernel backend (auto, avx512-vpopcnt, avx2, portable, torch-fallback)")
    ap.add_argument("--json", metavar="PATH", help="write results as JSON ('-' for stdout)")
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    if args.backend:
        kernels.set_backend(args.backend)
    info = kernels.build_info()
    load_before = os.getloadavg() if hasattr(os, "getloadavg") else None
    rows = [bench_shape(m, k, n, args.threads, args.rounds, args.min_run_time)
            for (m, k, n) in args.shapes]

    result = {
        "benchmark": "bench_kernels",
        "backend": kernels.backend(),
        "fallback_reason": kernels.fallback_reason(),
        "threads": args.threads,
        "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
        "cpu_flags": info.get("cpu"),
        "build": {k: info.get(k) for k in ("compiled", "seconds", "library")},
        "timer": "torch.utils.benchmark.Timer.blocked_autorange, median of per-round medians",
        "cpu_count": os.cpu_count(),
        "loadavg_1min_before_after": [load_before and round(load_before[0], 2),
                                      round(os.getloadavg()[0], 2) if load_before else None],
        "results": rows,
    }

    out = sys.stderr if args.json == "-" else sys.stdout
    print(f"backend={result['backend']} threads={args.threads} torch={torch.__version__} "
          f"build={'compiled' if info.get('compiled') else 'cached'} ({info.get('seconds')} s)", file=out)
    hdr = f"{'shape MxKxN':>14} {'fp32 Linear us':>15} {'binary us':>10} {'speed-up':>9} {'(of mins)':>10}"
    print(hdr, file=out)
    print("-" * len(hdr), file=out)
    for r in rows:
        print(f"{r['shape']:>14} {r['fp32_linear_us']:>15.1f} {r['binary_linear_us']:>10.1f} "
              f"{r['speedup']:>8.1f}x {r['speedup_of_mins']:>9.1f}x", file=out)
    la = result["loadavg_1min_before_after"]
    if la[0] is not None and max(la) > (os.cpu_count() or 1) - 0.5:
        print(f"WARNING: load average {la[0]}/{la[1]} on {os.cpu_count()} CPUs: other processes "
              "compete for the cores, multi-threaded timings are unreliable", file=out)
    if args.json:
        text = json.dumps(result, indent=2)
        if args.json == "-":
            print(text)
        else:
            Path(args.json).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
