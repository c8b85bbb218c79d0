"""Complete result-record metrics for tests, as the runner writes them (schema version 2):
:func:`metrics_doc` is the JSON, :func:`sample_metrics` the typed :class:`CellMetrics` read from it."""
from __future__ import annotations

from beexbench.results.metrics import CellMetrics


def latency_doc(median: float = 2.0, *, p90: float | None = None, ci=(1.9, 2.1), threads: int = 2, batch_size: int = 1,
                seq_len: int | None = None, warnings=()) -> dict:
    p90 = median * 1.2 if p90 is None else p90
    return {"values": [median] * 3, "n": 3, "median": median, "p90": p90, "p99": p90, "iqr": 0.0, "mean": median, "std": 0.0,
            "min": median, "max": p90, "ci95_median": list(ci), "ci_halfwidth_pct": 5.0, "timer": "perf_counter_ns",
            "target": "cpu", "emulated": False, "threads": threads, "warmup": 1, "batch_size": batch_size, "seq_len": seq_len,
            "n_inputs": 3, "elapsed_s": 0.1, "stop_reason": "min_iters_and_min_seconds", "warnings": list(warnings),
            "unit": "ms", "wait_policy": "ACTIVE", "isolated": True}


def quality_doc(value, *, metric: str = "accuracy", n: int = 400, ci=(0.76, 0.84), undefined: str | None = None,
                note: str = "deployed model, exit rule applied") -> dict:
    if metric == "accuracy":
        return {"value": value, "metric": "accuracy", "correct": round(value * n), "n": n, "ci95": list(ci),
                "ci_method": "wilson", "split": "test", "note": note}
    doc = {"value": value, "metric": "pearson_r", "n": n, "ci95": list(ci), "ci_method": "fisher_z",
           "spearman": value, "mse_label_var": 0.5, "rmse": 1.0, "mae": 0.8, "split": "test", "note": note}
    if value is None:
        doc["undefined"] = undefined or "Pearson r is undefined (constant prediction)"
    return doc


def ops_mean_doc(macs_fp32: float, bops: float) -> dict:
    flops = 2 * macs_fp32
    return {"flops": flops, "bops": bops, "ops": flops + bops / 64, "elementwise_flops": 0.0, "macs_fp32": macs_fp32,
            "macs_w1a32": 0.0, "macs_binary": bops, "macs_int8": 0.0}


def sweep_rows(score: float, macs: float, n_blocks: int, shift: float = 0.0, metric: str = "accuracy") -> list[dict]:
    rows = []
    for i, delta in enumerate([-0.5, 0.0, 0.1, 0.3, 0.5, 1.01]):
        depth = n_blocks - i * (n_blocks - 1) / 5
        rows.append({"rule": "fractional-entropy", "delta": delta, metric: score - 0.01 * i + shift,
                     "mean_exit_block": depth, "exit_histogram": [0] * n_blocks, "mean_macs": macs * depth / n_blocks})
    return rows


def exits_doc(score: float, macs: float, *, mean_exit: float = 2.0, n_blocks: int = 3, histogram=(0, 300, 100),
              metric: str = "accuracy") -> dict:
    doc = {"n_exits": n_blocks, "n_blocks": n_blocks, "metric": metric,
           "rule": {"rule": "fractional-entropy", "delta": 0.5, "min_exit": 2, "answer": "lower_entropy"},
           "histogram": list(histogram), "accuracy_at_taken_exit": [None] + [score] * (n_blocks - 1),
           "accuracy_if_all_exit_at": [score] * n_blocks, "mean_exit_block": mean_exit}
    if metric == "accuracy":
        doc["mean_entropy_per_exit"] = [0.5] * n_blocks
    else:
        doc["mean_abs_change_per_exit"] = [None] + [0.1] * (n_blocks - 1)
    doc["calibration"] = {"split": "val", "param": "delta", "metric": metric, "reference_accuracy": score, "tolerance": 0.005,
                          "chosen": 0.5, "deployed_accuracy": score,
                          "sweep": sweep_rows(score, macs, n_blocks, 0.01, metric)}
    doc["test_sweep"] = sweep_rows(score, macs, n_blocks, metric=metric)
    return doc


def metrics_doc(*, acc=0.80, metric: str = "accuracy", n=400, ci=(0.76, 0.84), undefined: str | None = None,
                total_bits=8_000_000, bits_no_emb=150_000, macs_fp32=60_000.0, bops=760_000.0, latency=2.0,
                latency_ci=(1.9, 2.1), p90=2.4, threads: int = 2, latency_warnings=(), energy=None, provenance="unavailable",
                mean_exit=2.0, n_blocks: int | None = 3, histogram=(0, 300, 100), rss: int = 2**28) -> dict:
    """The metrics of one cell, complete; ``n_blocks=None``: no exits (a reference floor)."""
    exits = None if n_blocks is None else exits_doc(acc if acc is not None else 0.0, macs_fp32 + bops, mean_exit=mean_exit,
                                                    n_blocks=n_blocks, histogram=histogram, metric=metric)
    joules = None if energy is None else energy * 10
    return {
        "accuracy": quality_doc(acc, metric=metric, n=n, ci=ci, undefined=undefined),
        "accuracy_no_exit": quality_doc(acc, metric=metric, n=n, ci=ci, undefined=undefined, note="final exit, every block run"),
        "ops": {"per_sample_mean": ops_mean_doc(macs_fp32, bops), "per_sample_mean_all_blocks": ops_mean_doc(macs_fp32, bops),
                "macs_reduction_from_exits": 0.0, "per_depth_at_mean_length": [],
                "convention": "MACs: test convention; OPs = FLOPs + BOPs/64", "counter": "test", "uncounted": {}},
        "exits": exits,
        "size": {"params": total_bits // 32, "bits": {"embeddings": total_bits - bits_no_emb, "fp32": bits_no_emb},
                 "total_bits": total_bits, "total_bits_without_embeddings": bits_no_emb, "total_bytes": total_bits / 8,
                 "disk_bytes": total_bits // 8 + 1000, "disk_files": ["weights.safetensors"],
                 "notes": ["1-bit weights: 1 bit per element"], "units": {"bits": "bit"}},
        "batch1": latency_doc(latency, p90=p90, ci=latency_ci, threads=threads, warnings=latency_warnings),
        "energy": {"joules": joules, "joules_per_sample": energy, "idle_watts": None, "provenance": provenance,
                   "inputs": {}, "domains": {}, "warnings": [], "joules_raw": None, "duration_s": 0.1, "n_samples": 10,
                   "target": "cpu", "unit": "J"},
        "memory": {"peak_rss_bytes": rss, "baseline_rss_bytes": rss // 2, "peak_rss_delta_bytes": rss // 2,
                   "device_peak_allocated_bytes": None, "device_baseline_allocated_bytes": None,
                   "device_peak_reserved_bytes": None, "method": "test", "samples": 10, "target": "cpu", "warnings": [],
                   "unit": "bytes"},
        "batch_sweep": [latency_doc(latency * 3, batch_size=4)],
        "seq_len_sweep": [latency_doc(latency, seq_len=8)],
        "latency_by_threads": [latency_doc(latency, threads=threads), latency_doc(latency * 3, threads=threads, batch_size=4)],
    }


def sample_metrics(**kw) -> CellMetrics:
    """:func:`metrics_doc` read as the report reads it."""
    return CellMetrics.from_dict(metrics_doc(**kw), source="tests/records.py", at="/metrics")
