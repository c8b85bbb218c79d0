"""Measure one trained model on one target: accuracy, exits, operations, size,
latency, memory and energy. Each profiler returns the result's own typed section
(:mod:`beexbench.results.metrics`); this module only composes them into a record's metrics. Whether the
task is classification or regression is the task's declared problem (``TaskSpec.problem``),
passed down - never guessed from the labels."""
from __future__ import annotations

import dataclasses
import math
from contextlib import nullcontext
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..adapters.base import ExitLayout, ModelAdapter
from ..adapters.protocols import EarlyExit, exit_layout_of, exit_rule_of
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
from ..results.codec import Section
from ..results.columns import declared
from ..results.implementation import Implementation, implementation_of
from ..results.metrics import Calibration, CellMetrics, Energy, Exits, Latency, Memory, Ops, OpsMean, Quality, Size, SweepRow
from ..results.codec import absent_if_none
from ..results.samples import Samples
from ..results.scenarios import Scenarios
from ..results.static_depth import StaticDepth
from ..training.calibrate import all_exit_logits, sweep
from ..training.metrics import Problem, metric_of, score
from .quality import accuracy_record, fisher_ci, quality_record, regression_record, samples_record, wilson_ci  # noqa: F401 (re-exported)
from .scenarios import measure_scenarios
from .static_depth import StaticLatency, applies, budget_label, measure_static_latency, static_reference, with_latency


@torch.no_grad()
def predict_all(adapter: ModelAdapter, split: EncodedSplit, batch_size: int = 256):
    logits, blocks = [], []
    for b in split.batches(batch_size):
        d = adapter.predict(b.input_ids, b.attention_mask)
        logits.append(d.logits)
        blocks.append(d.exit_block)
    return torch.cat(logits), torch.cat(blocks)


@dataclass(frozen=True)
class QualityAndExits:
    """The test-split sections of a record: quality with and without exits, operations, exits."""

    accuracy: Quality
    accuracy_no_exit: Quality
    ops: Ops
    exits: Exits | None  # None: no blocks and no exit rule (the reference floors)
    static_depth: StaticDepth | None = None  # an early-exit model's static curve (latency filled by cell_metrics)
    samples: Samples | None = None  # each test sample's answer and exit block (metrics.samples: the paired tests)


def measure_accuracy_and_exits(adapter: ModelAdapter, test: EncodedSplit, depth: DepthCost,
                               problem: Problem | None = None) -> QualityAndExits:
    """Quality, operations and exits on the test split. ``problem``: the task's declared problem
    (default: the one of the task the adapter was built for, ``adapter.spec.problem``)."""
    problem = problem or adapter.spec.problem
    implementation_of(adapter)  # a deployment whose fast path cannot run fails here, before any slow pass
    logits, blocks = predict_all(adapter, test)
    labels = test.labels
    label_std = adapter.spec.label_std
    accuracy = quality_record(logits, labels, label_std, "test", "deployed model, exit rule applied", problem)
    all_logits = all_exit_logits(adapter.forward, test)  # [n_exits, N, C]
    n_exits = all_logits.shape[0]
    no_exit = quality_record(all_logits[-1], labels, label_std, "test", "final exit, every block run", problem)
    lengths = test.attention_mask.sum(1)
    layout, rule = exit_layout_of(adapter), exit_rule_of(adapter)  # as the adapter declares them (protocols.EarlyExit)
    check_layout(adapter.name, layout, depth, n_exits)
    ops = ops_summary(depth, blocks, lengths)
    samples = samples_record(logits, blocks, test, problem)
    if n_exits == 1 and layout.n_blocks == 1 and rule is None:  # no blocks and no exit rule (the reference floors)
        return QualityAndExits(accuracy, no_exit, ops, None, samples=samples)
    hist = torch.bincount(blocks, minlength=depth.n_blocks + 1)[1:]
    regression = problem == "regression"

    def score_or_none(outputs: torch.Tensor, y: torch.Tensor) -> float | None:
        value = score(outputs, y, problem) if len(y) > (1 if regression else 0) else math.nan
        return None if math.isnan(value) else value

    signal: dict[str, Any] = {}
    if regression:  # the prediction-change rule's signal, in label standard deviations
        signal["mean_abs_change_per_exit"] = (None, *(
            float(prediction_change(all_logits[i], all_logits[i - 1]).mean()) for i in range(1, n_exits)))
    else:
        signal["mean_entropy_per_exit"] = tuple(float(entropy(all_logits[i]).mean()) for i in range(n_exits))
    cal = (adapter.fit_report.calibration if adapter.fit_report else None) or None
    calibration = test_sweep = None
    if cal:
        # its sweep is scored in the task's metric (a plugin's calibration may leave the name out)
        calibration = Calibration.from_dict(cal if "metric" in cal else {**cal, "metric": metric_of(problem)},
                                            source=f"{adapter.name}'s calibration (fit_report.calibration)")
        rules = rule_variants_of(adapter, calibration.param, [row.rule[calibration.param] for row in calibration.sweep])
        test_sweep = tuple(SweepRow.from_dict(row, source=f"{adapter.name}'s test sweep")
                           for row in sweep(rules, all_logits, labels, lengths, depth.macs, depth.exits))
    exits = Exits(
        n_exits=n_exits,
        n_blocks=depth.n_blocks,
        metric=metric_of(problem),
        rule=rule.to_dict() if rule is not None else None,
        histogram=tuple(hist.tolist()),
        # one entry per block; None where no sample (regression: fewer than two) exited there
        accuracy_at_taken_exit=tuple(score_or_none(logits[blocks == b], labels[blocks == b]) for b in range(1, depth.n_blocks + 1)),
        accuracy_if_all_exit_at=tuple(score(all_logits[i], labels, problem) for i in range(n_exits)),
        mean_exit_block=float(blocks.float().mean()),
        calibration=calibration,  # chosen on validation
        test_sweep=test_sweep,
        **signal,
    )
    static = None
    if applies(adapter, n_exits):  # the same network and heads, always exiting at block k (runner.static_depth)
        static = static_reference(adapter, all_logits, logits, blocks, labels, lengths, depth, problem, label_std,
                                  calibration, test_sweep)
    return QualityAndExits(accuracy, no_exit, ops, exits, static, samples)


def rule_variants_of(adapter: ModelAdapter, param: str, values: list):
    """The deployed rule with ``param`` set to each of ``values``, as the model declares them
    (:class:`~beexbench.adapters.protocols.EarlyExit`); a model with a calibration but no
    variants fails its cell with the reason."""
    if not isinstance(adapter, EarlyExit):
        raise TypeError(f"{adapter.name} records an exit-rule calibration but declares no rule_variants (EarlyExit)")
    return adapter.rule_variants(param, values)


def check_layout(name: str, layout: ExitLayout, depth: DepthCost, n_exits: int) -> None:
    """The exits the adapter declares are the ones its module runs and the cost profile saw (a
    mismatch fails the cell: its exit and operation figures would not describe one model)."""
    if list(layout.exit_blocks) != list(depth.exits) or layout.n_blocks != depth.n_blocks or n_exits != len(layout.exit_blocks):
        raise RuntimeError(
            f"{name} declares exits after blocks {list(layout.exit_blocks)} of {layout.n_blocks} (exit_layout), but its "
            f"forward returns {n_exits} exit(s) and the operation counter sees exits after {depth.exits} of "
            f"{depth.n_blocks}: give its module 'blocks' and 'head_for(block)', or fix exit_layout()")


def ops_summary(depth: DepthCost, blocks: torch.Tensor, lengths: torch.Tensor) -> Ops:
    """Mean per-sample operations over what each test sample really ran, and the same
    with every block run; keyed by precision bucket."""
    pairs = Counter(zip(blocks.tolist(), lengths.tolist()))
    full = Counter(lengths.tolist())
    n = len(blocks)

    def mean_of(counter: Counter, fixed_block: int | None) -> OpsMean:
        acc: dict[str, float] = {}
        macs: dict[str, float] = {}
        for key, count in counter.items():
            block, length = (fixed_block, key) if fixed_block else key
            rec = depth.record(block, length).to_dict()
            for field in ("flops", "bops", "ops", "elementwise_flops"):
                acc[field] = acc.get(field, 0.0) + rec[field] * count
            for bucket, count_macs in rec["macs"].items():
                macs[bucket] = macs.get(bucket, 0.0) + count_macs * count
        return OpsMean(**{k: v / n for k, v in acc.items()}, macs={k: v / n for k, v in macs.items()})

    taken = mean_of(pairs, None)
    every = mean_of(full, depth.n_blocks)
    total = lambda m: sum(m.macs.values())  # noqa: E731
    reduction = 1 - total(taken) / total(every) if total(every) else 0.0
    whole = depth.record(depth.n_blocks, 1)
    return Ops(
        per_sample_mean=taken,
        per_sample_mean_all_blocks=every,
        macs_reduction_from_exits=reduction,
        per_depth_at_mean_length=tuple(depth.record(b, int(round(float(lengths.float().mean())))).to_dict() for b in depth.exits),
        convention=whole.convention,
        counter=whole.counter,
        uncounted=dict(whole.uncounted),
    )


@dataclass(frozen=True, kw_only=True)
class Speed(Section):
    """The target-side sections of a record: latency, memory and (when measured) energy. An
    isolated measuring process sends it back through the result codec (:meth:`to_dict` /
    :meth:`from_dict`, the same typed read as a record's)."""

    batch1: Latency
    energy: Energy | None  # None: the run does not measure energy
    memory: Memory
    batch_sweep: tuple[Latency, ...]
    seq_len_sweep: tuple[Latency, ...]
    implementation: Implementation | None = None  # what ran the timed code (None: not recorded)
    skipped: tuple[str, ...] = ()  # each requested batch size or length that was not measured, and why
    static_depth: tuple[StaticLatency, ...] = ()  # batch 1 at each static depth (runner.static_depth; () : none)
    static_budget: str = ""  # the static latencies' reduced budget, as a label
    scenarios: Scenarios | None = absent_if_none()  # latency.scenarios (runner.scenarios; None: none asked)

    @property
    def warnings(self) -> list[str]:
        """The profilers' warnings, each prefixed with its section, then what the sweeps skipped
        and a fallback implementation, when one ran."""
        sections = [("batch1", self.batch1), ("memory", self.memory), ("energy", self.energy)]
        out = [f"{name}: {w}" for name, rec in sections if rec is not None for w in rec.warnings]
        out += list(self.skipped)
        impl = self.implementation
        if impl is not None and impl.fallback:
            out.append(f"implementation: {impl.label} instead of {impl.fast_path} ({impl.reason}; allowed by "
                       f"{impl.allowed_by}): the latency, memory and energy are the fallback's")
        return out


def skipped_sizes(settings: LatencySettings, n_test: int, max_len: int) -> list[str]:
    """Why each of the suite's batch sizes and lengths that the test split cannot fill is not
    measured (a warning in the record, never a silent gap in the sweep)."""
    out = [f"batch_sweep: batch size {bs} is larger than the test split ({n_test} samples): not measured"
           for bs in settings.batch_sizes if bs > n_test and bs != 1]
    out += [f"seq_len_sweep: length {length} exceeds the task's max_len {max_len}: not measured"
            for length in settings.seq_lens if length > max_len]
    return out


def measure_speed(adapter: ModelAdapter, test: EncodedSplit, target: Target, settings: LatencySettings,
                  energy: bool, progress: Progress = NULL_PROGRESS) -> Speed:
    """Batch-1 latency on real test samples (each trimmed to its own length, so exits and
    lengths vary as in deployment), with memory and energy around the same loop; then
    larger batch sizes of real samples."""
    adapter.module().to(target.device)
    implementation = implementation_of(adapter)  # before timing: a fast path that cannot run fails here
    skipped = skipped_sizes(settings, len(test), test.input_ids.shape[1])
    for note in skipped:
        progress.log(note)
    n = min(settings.samples, len(test))
    singles = []
    for i in range(n):
        b = test.batch(slice(i, i + 1))
        singles.append((b.input_ids.to(target.device), b.attention_mask.to(target.device)))

    def one(sample):
        return adapter.predict(*sample)

    energy_rec = None
    with torch.inference_mode():
        with progress.task(f"latency {adapter.name} bs=1", total=None):
            # energy counters are read before and after: they do not disturb the timed loop
            with (track_energy(target, n_samples=None) if energy else nullcontext()) as en:
                rec = measure_latency(one, target=target, inputs=singles, warmup=settings.warmup,
                                      min_iters=settings.min_iters, min_seconds=settings.min_seconds,
                                      max_seconds=settings.max_seconds, batch_size=1)
        batch1 = rec
        if energy:
            energy_rec = _energy_per_sample(en.record, rec.n + settings.warmup)
        static = ()
        fewest = target.threads == min(target.thread_settings())  # kept at the fewest threads only (runner.isolate)
        if fewest:
            with progress.task(f"latency {adapter.name} at each static depth, bs=1", total=None):
                static = measure_static_latency(adapter, singles, target, settings, lambda fn, inputs, **b: measure_latency(
                    fn, target=target, inputs=inputs, batch_size=1, **b))
        # memory in its own pass: the RSS sampling thread would compete with the timed code
        with target.activate(), track_memory(target) as mem:
            for sample in singles:
                one(sample)
        memory = mem.record
        short = dict(warmup=max(2, settings.warmup // 2), min_iters=max(5, settings.min_iters // 2),
                     min_seconds=settings.min_seconds / 2, max_seconds=settings.max_seconds / 2)
        batch_sweep = []
        for bs in settings.batch_sizes:
            if bs == 1 or bs > len(test):
                continue
            batches = [tuple(t.to(target.device) for t in (b.input_ids, b.attention_mask))
                       for b in (test.batch(slice(s, s + bs)) for s in range(0, min(len(test), bs * 16), bs)) if len(b) == bs]
            with progress.task(f"latency {adapter.name} bs={bs}", total=None):
                r = measure_latency(one, target=target, inputs=batches, batch_size=bs, **short)
            batch_sweep.append(r)
        # sequence-length sweep at batch size 1: real test sentences cut (or padded) to L tokens
        seq_len_sweep = []
        for length in settings.seq_lens:
            if length > test.input_ids.shape[1]:
                continue  # in ``skipped``
            ids = test.input_ids[:16, :length].to(target.device)
            mask = test.attention_mask[:16, :length].clone()
            mask[:, :length] = True  # every position is a token: the cost of exactly L tokens
            inputs = [(ids[i : i + 1], mask[i : i + 1].to(target.device)) for i in range(len(ids))]
            with progress.task(f"latency {adapter.name} L={length}", total=None):
                r = measure_latency(one, target=target, inputs=inputs, batch_size=1, seq_len=length, **short)
            seq_len_sweep.append(r)
    # issue 31, after every timed loop; at the fewest threads only: the traffic generator's own threads keep a core
    scenarios = measure_scenarios(adapter, test, target, settings, batch1) if fewest else None
    return Speed(scenarios=scenarios, batch1=batch1, energy=energy_rec, memory=memory, batch_sweep=tuple(batch_sweep),
                 seq_len_sweep=tuple(seq_len_sweep), implementation=implementation, skipped=tuple(skipped),
                 static_depth=static, static_budget=budget_label(settings) if static else "")


def _energy_per_sample(rec: Energy, calls: int) -> Energy:
    """The energy loop ran ``calls`` batch-1 predictions (warm-up included)."""
    per_sample = rec.joules / calls if rec.joules is not None else rec.joules_per_sample
    return dataclasses.replace(rec, joules_per_sample=per_sample, n_samples=calls)


def measure_model_size(adapter: ModelAdapter, checkpoint: Path) -> Size:
    return measure_size(adapter, adapter.deployable_files(checkpoint))


def measure_declared(adapter: ModelAdapter, test: EncodedSplit, target: Target) -> dict[str, Section]:
    """The sections of the declared metrics (``beexbench.results.columns.DECLARED_METRICS``) that
    measure themselves, each checked to be its declared type."""
    out: dict[str, Section] = {}
    for d in declared():
        if d.measure is None:
            continue
        section = d.measure(adapter, test, target)
        if not isinstance(section, d.section):
            raise TypeError(f"metric {d.key!r} measured a {type(section).__name__}, not its declared {d.section.__name__}")
        out[d.key] = section
    return out


def cell_metrics(quality: QualityAndExits, size: Size, speed: Speed,
                 latency_by_threads: tuple[Latency, ...] = (), declared_sections: dict[str, Section] | None = None) -> CellMetrics:
    """The record's ``metrics``, composed from the three measurements (``speed``: the fastest
    thread setting's; ``latency_by_threads``: every setting's latency records) and the declared
    metrics' sections (written as ``metrics.<key>``), with an early-exit model's static-depth
    reference (``metrics.static_depth``, its latencies the fastest setting's)."""
    declared_sections = dict(declared_sections or {})
    if quality.samples is not None:
        declared_sections["samples"] = quality.samples
    if speed.scenarios is not None:
        declared_sections["scenarios"] = speed.scenarios
    if quality.static_depth is not None:
        declared_sections["static_depth"] = with_latency(quality.static_depth, speed.static_depth, speed.static_budget)
    return CellMetrics(accuracy=quality.accuracy, accuracy_no_exit=quality.accuracy_no_exit, ops=quality.ops,
                       exits=quality.exits, size=size, batch1=speed.batch1, energy=speed.energy, memory=speed.memory,
                       batch_sweep=speed.batch_sweep, seq_len_sweep=speed.seq_len_sweep, implementation=speed.implementation,
                       latency_by_threads=latency_by_threads or (speed.batch1, *speed.batch_sweep),
                       extra=declared_sections)
