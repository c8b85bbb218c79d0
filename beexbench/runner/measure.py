"""Measure one trained model on one target: accuracy, exits, operations, size,
latency, memory and energy. Each profiler returns a record; this module only composes them."""
from __future__ import annotations

import math
from contextlib import nullcontext
from collections import Counter
from pathlib import Path
from typing import Any

import torch

from ..adapters.base import ExitLayout, ModelAdapter
from ..config import LatencySettings
from ..models.exits import entropy, prediction_change
from ..profilers.energy import track_energy
from ..profilers.latency import measure_latency
from ..profilers.memory import track_memory
from ..profilers.ops import DepthCost
from ..profilers.size import measure_size
from ..progress import NULL_PROGRESS, Progress
from ..targets import Target
from ..training.batches import EncodedSplit
from ..training.calibrate import all_exit_logits, sweep
from ..training.metrics import is_regression, metric_name, pearson, score, spearman


def wilson_ci(correct: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a proportion."""
    if n == 0:
        return (math.nan, math.nan)
    p = correct / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (centre - half, centre + half)


def accuracy_record(correct: int, n: int, split: str, note: str) -> dict:
    lo, hi = wilson_ci(correct, n)
    return {"value": correct / n if n else math.nan, "metric": "accuracy", "correct": correct, "n": n,
            "ci95": [lo, hi], "ci_method": "wilson", "split": split, "note": note}


def fisher_ci(r: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% interval of a Pearson correlation by Fisher's z transform."""
    if n < 4 or math.isnan(r):
        return (math.nan, math.nan)
    centre, half = math.atanh(max(min(r, 1 - 1e-12), -1 + 1e-12)), z / math.sqrt(n - 3)
    return (math.tanh(centre - half), math.tanh(centre + half))


def regression_record(outputs: torch.Tensor, labels: torch.Tensor, label_std: float, split: str, note: str) -> dict:
    """Pearson r (the headline), Spearman rho, and errors: MSE in units of the train labels'
    variance (what the model was trained on), RMSE and MAE back on the label scale."""
    pred, y = outputs[:, 0].double(), labels.double()
    r, n = pearson(pred, y), len(y)
    err = pred - y
    mse = float((err**2).mean()) if n else math.nan
    rec = {"value": r, "metric": "pearson_r", "n": n, "ci95": list(fisher_ci(r, n)), "ci_method": "fisher_z",
           "spearman": spearman(pred, y), "mse_label_var": mse, "rmse": math.sqrt(mse) * label_std,
           "mae": float(err.abs().mean()) * label_std if n else math.nan, "split": split, "note": note}
    if math.isnan(r):  # a constant prediction (the majority floor) has no correlation: say so, never a number
        why = "constant prediction" if n >= 2 and float(pred.std()) == 0 else "fewer than two samples or constant labels"
        rec.update(value=None, ci95=[None, None], spearman=None, undefined=f"Pearson r is undefined ({why})")
    return rec


def quality_record(outputs: torch.Tensor, labels: torch.Tensor, label_std: float, split: str, note: str) -> dict:
    """The task's headline quality: accuracy (classification) or Pearson r (regression)."""
    if is_regression(labels):
        return regression_record(outputs, labels, label_std, split, note)
    return accuracy_record(int((outputs.argmax(-1) == labels).sum()), len(labels), split, note)


@torch.no_grad()
def predict_all(adapter: ModelAdapter, split: EncodedSplit, batch_size: int = 256):
    logits, blocks = [], []
    for b in split.batches(batch_size):
        d = adapter.predict(b.input_ids, b.attention_mask)
        logits.append(d.logits)
        blocks.append(d.exit_block)
    return torch.cat(logits), torch.cat(blocks)


def measure_accuracy_and_exits(adapter: ModelAdapter, test: EncodedSplit, depth: DepthCost) -> dict[str, Any]:
    logits, blocks = predict_all(adapter, test)
    labels = test.labels
    label_std = adapter.spec.label_std
    out: dict[str, Any] = {"accuracy": quality_record(logits, labels, label_std, "test", "deployed model, exit rule applied")}
    all_logits = all_exit_logits(adapter.forward, test)  # [n_exits, N, C]
    n_exits = all_logits.shape[0]
    out["accuracy_no_exit"] = quality_record(all_logits[-1], labels, label_std, "test", "final exit, every block run")
    lengths = test.attention_mask.sum(1)
    layout, rule = adapter.exit_layout(), adapter.exit_rule()  # as the adapter declares them
    check_layout(adapter.name, layout, depth, n_exits)
    out["ops"] = ops_summary(depth, blocks, lengths)
    if n_exits == 1 and layout.n_blocks == 1 and rule is None:
        out["exits"] = None  # no blocks and no exit rule (the reference floors): nothing to report per exit
        return out
    hist = torch.bincount(blocks, minlength=depth.n_blocks + 1)[1:]

    def score_or_none(outputs: torch.Tensor, y: torch.Tensor) -> float | None:
        value = score(outputs, y) if len(y) > (1 if is_regression(y) else 0) else math.nan
        return None if math.isnan(value) else value

    out["exits"] = {
        "n_exits": n_exits,
        "n_blocks": depth.n_blocks,
        "metric": metric_name(labels),
        "rule": rule.to_dict() if rule is not None else None,
        "histogram": hist.tolist(),
        # one entry per block; None where no sample (regression: fewer than two) exited there
        "accuracy_at_taken_exit": [score_or_none(logits[blocks == b], labels[blocks == b]) for b in range(1, depth.n_blocks + 1)],
        "accuracy_if_all_exit_at": [score(all_logits[i], labels) for i in range(n_exits)],
        "mean_exit_block": float(blocks.float().mean()),
    }
    if is_regression(labels):  # the prediction-change rule's signal, in label standard deviations
        out["exits"]["mean_abs_change_per_exit"] = [None] + [
            float(prediction_change(all_logits[i], all_logits[i - 1]).mean()) for i in range(1, n_exits)]
    else:
        out["exits"]["mean_entropy_per_exit"] = [float(entropy(all_logits[i]).mean()) for i in range(n_exits)]
    cal = (adapter.fit_report.calibration if adapter.fit_report else None) or None
    if cal:
        out["exits"]["calibration"] = cal  # chosen on validation
        rules = adapter.rule_variants(cal["param"], [row[cal["param"]] for row in cal["sweep"]])
        out["exits"]["test_sweep"] = sweep(rules, all_logits, labels, lengths, depth.macs, depth.exits)
    return out


def check_layout(name: str, layout: ExitLayout, depth: DepthCost, n_exits: int) -> None:
    """The exits the adapter declares are the ones its module runs and the cost profile saw (a
    mismatch fails the cell: its exit and operation figures would not describe one model)."""
    if list(layout.exit_blocks) != list(depth.exits) or layout.n_blocks != depth.n_blocks or n_exits != len(layout.exit_blocks):
        raise RuntimeError(
            f"{name} declares exits after blocks {list(layout.exit_blocks)} of {layout.n_blocks} (exit_layout), but its "
            f"forward returns {n_exits} exit(s) and the operation counter sees exits after {depth.exits} of "
            f"{depth.n_blocks}: give its module 'blocks' and 'head_for(block)', or fix exit_layout()")


def ops_summary(depth: DepthCost, blocks: torch.Tensor, lengths: torch.Tensor) -> dict[str, Any]:
    """Mean per-sample operations over what each test sample really ran, and the same
    with every block run; keyed by precision bucket."""
    pairs = Counter(zip(blocks.tolist(), lengths.tolist()))
    full = Counter(lengths.tolist())
    n = len(blocks)

    def mean_of(counter: Counter, fixed_block: int | None) -> dict[str, float]:
        acc: dict[str, float] = {}
        for key, count in counter.items():
            block, length = (fixed_block, key) if fixed_block else key
            rec = depth.record(block, length).to_dict()
            for field in ("flops", "bops", "ops", "elementwise_flops"):
                acc[field] = acc.get(field, 0.0) + rec[field] * count
            for bucket, macs in rec["macs"].items():
                acc[f"macs_{bucket}"] = acc.get(f"macs_{bucket}", 0.0) + macs * count
        return {k: v / n for k, v in acc.items()}

    taken = mean_of(pairs, None)
    every = mean_of(full, depth.n_blocks)
    total = lambda d: sum(v for k, v in d.items() if k.startswith("macs_"))  # noqa: E731
    reduction = 1 - total(taken) / total(every) if total(every) else 0.0
    return {
        "per_sample_mean": taken,
        "per_sample_mean_all_blocks": every,
        "macs_reduction_from_exits": reduction,
        "per_depth_at_mean_length": [depth.record(b, int(round(float(lengths.float().mean())))).to_dict() for b in depth.exits],
        "convention": depth.record(depth.n_blocks, 1).convention,
        "counter": depth.record(depth.n_blocks, 1).counter,
        "uncounted": depth.record(depth.n_blocks, 1).uncounted,
    }


def measure_speed(adapter: ModelAdapter, test: EncodedSplit, target: Target, settings: LatencySettings,
                  energy: bool, progress: Progress = NULL_PROGRESS) -> dict[str, Any]:
    """Batch-1 latency on real test samples (each trimmed to its own length, so exits and
    lengths vary as in deployment), with memory and energy around the same loop; then
    larger batch sizes of real samples."""
    adapter.module().to(target.device)
    n = min(settings.samples, len(test))
    singles = []
    for i in range(n):
        b = test.batch(slice(i, i + 1))
        singles.append((b.input_ids.to(target.device), b.attention_mask.to(target.device)))

    def one(sample):
        return adapter.predict(*sample)

    out: dict[str, Any] = {}
    with torch.inference_mode():
        with progress.task(f"latency {adapter.name} bs=1", total=None):
            # energy counters are read before and after: they do not disturb the timed loop
            with (track_energy(target, n_samples=None) if energy else nullcontext()) as en:
                rec = measure_latency(one, target=target, inputs=singles, warmup=settings.warmup,
                                      min_iters=settings.min_iters, min_seconds=settings.min_seconds,
                                      max_seconds=settings.max_seconds, batch_size=1)
        out["batch1"] = rec.to_dict()
        if energy:
            out["energy"] = _energy_per_sample(en.record.to_dict(), rec.n + settings.warmup)
        # memory in its own pass: the RSS sampling thread would compete with the timed code
        with target.activate(), track_memory(target) as mem:
            for sample in singles:
                one(sample)
        out["memory"] = mem.record.to_dict()
        short = dict(warmup=max(2, settings.warmup // 2), min_iters=max(5, settings.min_iters // 2),
                     min_seconds=settings.min_seconds / 2, max_seconds=settings.max_seconds / 2)
        out["batch_sweep"] = []
        for bs in settings.batch_sizes:
            if bs == 1 or bs > len(test):
                continue
            batches = [tuple(t.to(target.device) for t in (b.input_ids, b.attention_mask))
                       for b in (test.batch(slice(s, s + bs)) for s in range(0, min(len(test), bs * 16), bs)) if len(b) == bs]
            with progress.task(f"latency {adapter.name} bs={bs}", total=None):
                r = measure_latency(one, target=target, inputs=batches, batch_size=bs, **short)
            out["batch_sweep"].append(r.to_dict())
        # sequence-length sweep at batch size 1: real test sentences cut (or padded) to L tokens
        out["seq_len_sweep"] = []
        for length in settings.seq_lens:
            if length > test.input_ids.shape[1]:
                progress.log(f"seq_len {length} exceeds the task's max_len {test.input_ids.shape[1]}: skipped")
                continue
            ids = test.input_ids[:16, :length].to(target.device)
            mask = test.attention_mask[:16, :length].clone()
            mask[:, :length] = True  # every position is a token: the cost of exactly L tokens
            inputs = [(ids[i : i + 1], mask[i : i + 1].to(target.device)) for i in range(len(ids))]
            with progress.task(f"latency {adapter.name} L={length}", total=None):
                r = measure_latency(one, target=target, inputs=inputs, batch_size=1, seq_len=length, **short)
            out["seq_len_sweep"].append(r.to_dict())
    return out


def _energy_per_sample(doc: dict, calls: int) -> dict:
    """The energy loop ran ``calls`` batch-1 predictions (warm-up included)."""
    doc = dict(doc)
    if doc.get("joules") is not None:
        doc["joules_per_sample"] = doc["joules"] / calls
    doc["n_samples"] = calls
    return doc




def measure_model_size(adapter: ModelAdapter, checkpoint: Path) -> dict:
    return measure_size(adapter, adapter.deployable_files(checkpoint)).to_dict()
