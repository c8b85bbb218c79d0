"""Batch-1 and batch-8 latency of the packed BEExformer engine at one thread: the old
per-block fused path (one C++ ``step`` per block, ``BEEXBENCH_ENGINE=steps``), the
whole-model native op (``infer``, one call per forward) and the float eager beexformer;
for reference also the same-size ``fp32`` model deployed with ONNX Runtime (``fp32-ort``,
trained the same few steps: its exit blocks under the early-exit rule are its own, so
compare like with like in the no-exit rows).

Default-size model (d_model 64, 4 heads, 6 blocks, SLFN d_ff 128, vocab 8000, max_len 64)
after a few AdamW steps, inputs of ~28 real tokens; rules FractionalEntropy(0.1) and no
early exit (every block runs). Timed with torch.utils.benchmark.Timer.blocked_autorange.

    python benchmarks/bench_engine.py [--threads 1] [--min-run-time 0.5] [--batches 1 8]

``--size minilm``: batch-1 latency at MiniLM-L6 size (sentence-transformers/all-MiniLM-L6-v2's
shape: d_model 384, 12 heads, 6 blocks, GELU d_ff 1536, vocab 30522, type_vocab_size 2, LayerNorm
eps 1e-12; random weights, ~24-token inputs), the packed whole-model engine (W1A1 beexformer,
int8 token rows) against the float fp32 eager EarlyExitEncoder, both with the no-exit rule (all 6
blocks run), at 1 and 2 threads: the median of per-call times over many calls, and the ratio.

    python benchmarks/bench_engine.py --size minilm [--min-run-time 3] [--tokens 24]
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
from torch.utils.benchmark import Timer

from beexbench.adapters.base import TaskSpec
from beexbench.adapters.registry import create_model, get_adapter_class
from beexbench.engine import _native
from beexbench.models.exits import ExitRule, FractionalEntropy

SPEC = TaskSpec(task="t", num_labels=2, vocab_size=8000, max_len=64)
ENC = {"encoder": {"d_model": 64, "n_heads": 4, "n_blocks": 6, "d_ff": 128}}


def inputs(batch: int, seed: int, tokens: int = 28):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(tokens - 4, tokens + 5, (batch,), generator=g) if batch > 1 else torch.tensor([tokens])
    width = int(lengths.max())
    mask = torch.arange(width)[None, :] < lengths[:, None]
    ids = torch.randint(1, SPEC.vocab_size, (batch, width), generator=g) * mask
    return ids, mask


def nudged(name: str, steps: int):
    """``name`` at the benchmark's size, moved off its init by ``steps`` AdamW steps."""
    torch.manual_seed(0)
    adapter = create_model(name, SPEC, ENC)
    model = adapter.module()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    ids, mask = inputs(32, seed=1)
    labels = ids[:, 0] % SPEC.num_labels
    model.train()
    for _ in range(steps):
        opt.zero_grad()
        torch.stack([torch.nn.functional.cross_entropy(lg, labels) for lg in model(ids, mask)]).mean().backward()
        opt.step()
    model.eval()
    return adapter


def build(steps: int):
    adapter = nudged("beexformer", steps)
    return adapter, get_adapter_class("beexformer-packed").derive(adapter, None)


def build_ort(steps: int):
    """fp32 of the same size, trained the same way, deployed as fp32-ort (None if unavailable)."""
    try:
        return get_adapter_class("fp32-ort").derive(nudged("fp32", steps), None)
    except Exception as exc:  # noqa: BLE001 - the ORT column is optional
        print(f"(no fp32-ort column: {type(exc).__name__}: {exc})")
        return None


def timed(fn, min_run_time: float) -> float:
    fn()  # warm-up
    return Timer(stmt="fn()", globals={"fn": fn}).blocked_autorange(min_run_time=min_run_time).median * 1e6


MINILM = {"d_model": 384, "n_heads": 12, "n_blocks": 6, "d_ff": 1536, "ffn": "gelu", "type_vocab_size": 2,
          "layer_norm_eps": 1e-12, "dropout": 0.0}
MINILM_VOCAB, MINILM_MAX_LEN = 30522, 128


def per_call(fn, min_run_time: float, min_calls: int = 50) -> tuple[float, int]:
    """Median of per-call wall times (us) over at least ``min_calls`` calls and ``min_run_time``
    seconds, after a warm-up (per-call, not blocked: batch 1 is one call per request)."""
    for _ in range(10):
        fn()
    times: list[float] = []
    end = time.perf_counter() + min_run_time
    while len(times) < min_calls or time.perf_counter() < end:
        t0 = time.perf_counter_ns()
        fn()
        times.append((time.perf_counter_ns() - t0) / 1e3)
    return statistics.median(times), len(times)


def minilm(args) -> None:
    """Packed whole-model engine vs the float fp32 eager encoder at MiniLM-L6 size, batch 1."""
    from beexbench.engine import pack_encoder
    from beexbench.models.encoder import EarlyExitEncoder, EncoderConfig

    torch.manual_seed(0)
    sizes = {"vocab_size": MINILM_VOCAB, "max_len": MINILM_MAX_LEN, "num_labels": 2}
    w1a1 = EncoderConfig(**MINILM)  # beexformer's W1A1 settings (the EncoderConfig defaults) at this size
    packed = pack_encoder(EarlyExitEncoder(w1a1, **sizes).state_dict(), w1a1.to_dict(), **sizes)
    fp32 = EarlyExitEncoder(EncoderConfig(**MINILM, weight_bits=32, act_bits=32, binary_qk=False), **sizes).eval()
    g = torch.Generator().manual_seed(7)
    ids = torch.randint(1000, MINILM_VOCAB, (1, args.tokens), generator=g)
    mask = torch.ones(1, args.tokens, dtype=torch.bool)
    rule = ExitRule()  # never exits early: all 6 blocks run in both
    ops = _native.ops()
    print(f"MiniLM-L6 size (d 384, 12 heads, 6 blocks, gelu d_ff 1536, vocab {MINILM_VOCAB}, type_vocab 2, eps 1e-12), "
          f"batch 1, {args.tokens} tokens, no early exit; engine: {_native.mode()}; "
          f"ISA {ops.engine_isa('') if ops is not None else '-'}; packed token rows {packed.tok.bits}-bit; "
          f"torch {torch.__version__}")
    print("times: median of per-call wall times (us)")
    head = f"{'threads':>7}  {'fp32 eager':>10}  {'packed whole-model':>18}  {'x (fp32 / packed)':>17}  calls (fp32; packed)"
    print(head)
    print("-" * len(head))
    threads = torch.get_num_threads()
    try:
        for t in (1, 2):
            torch.set_num_threads(t)
            with torch.no_grad():
                assert packed.infer(ids, mask, rule).exit_block.tolist() == [6]
                t_fp32, n_fp32 = per_call(lambda: fp32.infer(ids, mask, rule), args.min_run_time)
                t_packed, n_packed = per_call(lambda: packed.infer(ids, mask, rule), args.min_run_time)
            print(f"{t:>7}  {t_fp32:>10.1f}  {t_packed:>18.1f}  {t_fp32 / t_packed:>17.2f}  {n_fp32}; {n_packed}")
    finally:
        torch.set_num_threads(threads)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", choices=("default", "minilm"), default="default",
                    help="minilm: batch-1 packed whole-model vs fp32 eager at MiniLM-L6 size, 1 and 2 threads")
    ap.add_argument("--tokens", type=int, default=24, help="--size minilm: tokens per input")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--min-run-time", type=float, default=0.5, help="seconds per measurement")
    ap.add_argument("--train-steps", type=int, default=5)
    ap.add_argument("--no-ort", action="store_true", help="leave out the fp32-ort column")
    args = ap.parse_args()
    if args.size == "minilm":
        return minilm(args)
    torch.set_num_threads(args.threads)
    float_adapter, packed = build(args.train_steps)
    ort = None if args.no_ort else build_ort(args.train_steps)
    model = packed.module()
    ops = _native.ops()
    print(f"engine: {_native.mode()}; whole-model op ISA: {ops.engine_isa('') if ops is not None else '-'}; "
          f"threads {torch.get_num_threads()}; tok {type(model.tok).__name__} {getattr(model.tok, 'bits', 32)}")
    print("times: median us per forward, torch.utils.benchmark.Timer.blocked_autorange")
    rules = [("frac-entropy 0.1", FractionalEntropy(0.1)), ("no exit (6 blocks)", ExitRule())]
    head = (f"{'batch':>5}  {'rule':<18} {'float eager':>11} {'per-block':>10} {'whole-model':>11} {'fp32-ort':>9} "
            f"{'x steps':>7} {'x float':>7} {'x ort':>6}  exit blocks (packed; fp32-ort)")
    print(head)
    print("-" * len(head))
    for batch in args.batches:
        ids, mask = inputs(batch, seed=7 + batch)
        for name, rule in rules:
            float_adapter.set_rule(rule)
            packed.rule = rule
            with torch.no_grad():
                t_float = timed(lambda: float_adapter.predict(ids, mask), args.min_run_time)
                os.environ["BEEXBENCH_ENGINE"] = "steps"
                t_steps = timed(lambda: packed.predict(ids, mask), args.min_run_time)
                os.environ.pop("BEEXBENCH_ENGINE")
                t_whole = timed(lambda: packed.predict(ids, mask), args.min_run_time)
                exits = packed.predict(ids, mask).exit_block.tolist()
                t_ort, ort_exits = float("nan"), "-"
                if ort is not None:
                    ort.set_rule(rule)
                    t_ort = timed(lambda: ort.predict(ids, mask), args.min_run_time)
                    ort_exits = ort.predict(ids, mask).exit_block.tolist()
            print(f"{batch:>5}  {name:<18} {t_float:>11.1f} {t_steps:>10.1f} {t_whole:>11.1f} {t_ort:>9.1f} "
                  f"{t_steps / t_whole:>7.2f} {t_float / t_whole:>7.2f} {t_ort / t_whole:>6.2f}  {exits}; {ort_exits}")


if __name__ == "__main__":
    main()
