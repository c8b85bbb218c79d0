"""fp32 vs post-training quantized copies of the SAME model, side by side in one process.

    python benchmarks/bench_int8.py --threads 2
    python benchmarks/bench_int8.py --threads 2 --checkpoint <fp32 checkpoint dir>   # a trained model
    python benchmarks/bench_int8.py --json -                                          # machine-readable

The fp32 model is ``fp32`` (default architecture: d_model 128, 6 blocks, d_ff 256, SLFN,
exit heads; ``--d-model/--blocks/--d-ff`` change it), random unless ``--checkpoint`` is given; ``int8-dynamic`` (and the
weight-only int8 / int4 variants) are made from it with ``from_float``, so every column
has the same weights. Latency: ``adapter.forward`` (every block and exit head) on a batch
of ``--batch`` x ``--seq-len`` tokens, torch.utils.benchmark.Timer.blocked_autorange at
``--threads`` threads; the models are timed in alternating rounds so that background load
hits all alike, and the figure is the median over rounds of each round's median. Size:
bytes on disk of each adapter's deployable files (safetensors weights + JSON metadata),
and of the Linear weights alone (what quantization changes; embeddings stay fp32).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

import torch
from torch.utils import benchmark

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from beexbench.adapters.base import TaskSpec  # noqa: E402
from beexbench.adapters.checkpoint import WEIGHTS  # noqa: E402
from beexbench.adapters.registry import create_model, get_adapter_class, load_model  # noqa: E402
from beexbench.profilers.environment import cpu_flags, cpu_model  # noqa: E402

QUANTIZED = ("int8-dynamic", "int8-weight-only", "int4-weight-only")


def linear_bytes(directory: Path) -> int:
    """Bytes of the Linear layers' tensors in the safetensors file (everything but
    embeddings, LayerNorms and the tiny attention-probability scales)."""
    from safetensors import safe_open

    total = 0
    with safe_open(str(directory / WEIGHTS), "pt") as f:
        for key in f.keys():
            if not key.startswith(("tok.", "pos.", "emb_norm.")) and ".ln" not in key and ".norm." not in key:
                t = f.get_tensor(key)
                total += t.numel() * t.element_size()
    return total


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq-len", type=int, default=64)
    ap.add_argument("--vocab", type=int, default=8000, help="vocabulary of the random model (embeddings stay fp32)")
    ap.add_argument("--checkpoint", type=Path, help="a trained fp32 checkpoint to quantize instead of a random model")
    ap.add_argument("--models", default=",".join(QUANTIZED), help="quantized variants to compare with fp32")
    ap.add_argument("--d-model", type=int, default=128, help="width of the random model")
    ap.add_argument("--blocks", type=int, default=6, help="blocks of the random model")
    ap.add_argument("--d-ff", type=int, default=256, help="feed-forward width of the random model")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--min-run-time", type=float, default=0.5, help="seconds per blocked_autorange")
    ap.add_argument("--json", help="write results as JSON to this file ('-' for stdout)")
    args = ap.parse_args(argv)

    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    if args.checkpoint:
        fp32 = load_model(args.checkpoint)
    else:
        spec = TaskSpec(task="bench", num_labels=2, vocab_size=args.vocab, max_len=max(64, args.seq_len))
        fp32 = create_model("fp32", spec, {"encoder": {"d_model": args.d_model, "n_heads": 4, "n_blocks": args.blocks, "d_ff": args.d_ff}})
    adapters = {"fp32": fp32}
    for name in [m for m in args.models.split(",") if m]:
        adapters[name] = get_adapter_class(name).from_float(fp32)

    spec = fp32.spec
    ids = torch.randint(1, spec.vocab_size, (args.batch, args.seq_len))
    mask = torch.ones(args.batch, args.seq_len, dtype=torch.bool)
    timers = {
        name: benchmark.Timer("a.forward(ids, mask)", globals={"a": a, "ids": ids, "mask": mask},
                              num_threads=args.threads, label=name)
        for name, a in adapters.items()
    }
    rounds: dict[str, list[float]] = {n: [] for n in adapters}
    with torch.inference_mode():
        for a in adapters.values():
            a.forward(ids, mask)  # warm-up (kernel selection, weight caches)
        for _ in range(args.rounds):
            for name, t in timers.items():
                rounds[name].append(t.blocked_autorange(min_run_time=args.min_run_time).median)

    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, a in adapters.items():
            d = Path(tmp) / name
            a.save(d)
            files = a.deployable_files(d)
            rows[name] = {
                "latency_ms": statistics.median(rounds[name]) * 1e3,
                "latency_rounds_ms": [r * 1e3 for r in rounds[name]],
                "deployable_bytes": sum(f.stat().st_size for f in files),
                "deployable_files": [f.name for f in files],
                "linear_weight_bytes": linear_bytes(d),
            }
    base = rows["fp32"]
    for r in rows.values():
        r["speedup_vs_fp32"] = base["latency_ms"] / r["latency_ms"]
        r["size_ratio_vs_fp32"] = base["deployable_bytes"] / r["deployable_bytes"]
        r["linear_size_ratio_vs_fp32"] = base["linear_weight_bytes"] / r["linear_weight_bytes"]
    doc = {
        "torch": torch.__version__,
        "quantized_engine": torch.backends.quantized.engine,
        "cpu": cpu_model(),
        "int8_isa": [f for f in cpu_flags() if f in ("avx2", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "amx_int8")],
        "threads": args.threads,
        "batch": args.batch,
        "seq_len": args.seq_len,
        "model": fp32.config["encoder"],
        "vocab_size": spec.vocab_size,
        "source": str(args.checkpoint) if args.checkpoint else "random weights",
        "results": rows,
    }
    if args.json:
        text = json.dumps(doc, indent=2)
        if args.json == "-":
            print(text)
        else:
            Path(args.json).write_text(text)
    if args.json != "-":
        print(f"torch {doc['torch']}, engine {doc['quantized_engine']}, {doc['cpu']} ({' '.join(doc['int8_isa'])}), {args.threads} threads, "
              f"batch {args.batch} x {args.seq_len} tokens, forward of every block and exit head, {doc['source']}")
        print(f"{'model':18} {'median ms':>10} {'speedup':>8} {'disk KiB':>9} {'ratio':>6} {'Linear KiB':>11} {'ratio':>6}")
        for name, r in rows.items():
            print(f"{name:18} {r['latency_ms']:10.2f} {r['speedup_vs_fp32']:7.2f}x {r['deployable_bytes'] / 1024:9.1f} "
                  f"{r['size_ratio_vs_fp32']:5.2f}x {r['linear_weight_bytes'] / 1024:11.1f} {r['linear_size_ratio_vs_fp32']:5.2f}x")
    return doc


if __name__ == "__main__":
    main()
