"""The static-depth reference of an early-exit model (``metrics.static_depth``, declared in
:mod:`beexbench.results.static_depth`): "always exit at block k" for every exit block k, from the
same trained network and heads, beside the deployed rule, and the verdict in words.

Quality and cost come from what :mod:`beexbench.runner.measure` already holds: every exit's test
logits (static depth k answers with exit k's logits), the deployed rule's per-sample answers and
exit blocks, and the exact cost per depth (:class:`~beexbench.profilers.ops.DepthCost`). Latency at
k is measured in the deployment's own runtime, batch 1, through the same latency profiler: the
model deploys the rule ``static`` (:class:`~beexbench.models.exits.Static`) for the loop, so each
runtime (eager torch, the packed engine's one native call, ONNX Runtime's per-block sessions) runs
its own k blocks. A runtime that cannot deploy it records the latency as unavailable, with the
reason; a path other than the deployed one is named in the point's ``latency_note``.
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any, Iterator

import numpy as np
import torch

from ..adapters.protocols import EarlyExit, exit_layout_of, exit_rule_of
from ..config import LatencySettings
from ..models.exits import Static
from ..results.codec import Section
from ..results.implementation import implementation_of
from ..results.quality import Calibration, SweepRow
from ..results.static_depth import ALPHA, DEGENERATE_SHARE, CalibrationMark, StaticDepth, StaticPoint
from ..training.calibrate import OBJECTIVES, choose
from .quality import quality_record

NOT_YET = "not measured: no latency pass ran for this cell"


@dataclass(frozen=True, kw_only=True)
class StaticLatency(Section):
    """Batch-1 latency at static depth ``k`` (what an isolated measurement sends back in ``Speed``)."""

    k: int
    median_ms: float | None  # None: unavailable (``note`` says why)
    note: str


def mcnemar_p(b: int, c: int) -> float | None:
    """Exact two-sided McNemar test: the binomial test of ``b`` against ``b + c`` discordant pairs
    at 1/2 (None: no pair differs, nothing to test)."""
    if b + c == 0:
        return None
    from scipy.stats import binomtest  # scipy comes with scikit-learn

    return float(binomtest(b, b + c, 0.5).pvalue)


def exit_entropy_bits(histogram: list[int]) -> float:
    """Shannon entropy (bits) of the exit-block distribution: 0 when every sample leaves at one block."""
    n = sum(histogram)
    return float(-sum(c / n * math.log2(c / n) for c in histogram if c)) + 0.0 if n else 0.0


def _wins(a: torch.Tensor, b: torch.Tensor, labels: torch.Tensor, problem: str) -> tuple[int, int]:
    """Discordant pairs of answers ``a`` and ``b``: (a right and b wrong, a wrong and b right); for
    regression, (a closer to the label, b closer)."""
    if problem == "regression":
        ea, eb = (a[:, 0] - labels).abs(), (b[:, 0] - labels).abs()
        return int((ea < eb).sum()), int((eb < ea).sum())
    ra, rb = a.argmax(-1) == labels, b.argmax(-1) == labels
    return int((ra & ~rb).sum()), int((~ra & rb).sum())


def applies(adapter: Any, n_exits: int) -> bool:
    """Whether ``adapter`` gets a static-depth reference: an early-exit model that deploys a rule
    (:class:`~beexbench.adapters.protocols.EarlyExit`) with more than one exit."""
    return isinstance(adapter, EarlyExit) and exit_rule_of(adapter) is not None and n_exits > 1


def static_reference(adapter: Any, all_logits: torch.Tensor, logits: torch.Tensor, blocks: torch.Tensor,
                     labels: torch.Tensor, lengths: torch.Tensor, depth: Any, problem: str, label_std: float,
                     calibration: Calibration | None, test_sweep: tuple[SweepRow, ...] | None) -> StaticDepth:
    """The static curve and verdict from the test pass (latency still to measure: :func:`with_latency`)."""
    exit_blocks = list(exit_layout_of(adapter).exit_blocks)
    points, answers = [], {}
    for i, k in enumerate(exit_blocks):
        q = quality_record(all_logits[i], labels, label_std, "test", f"static depth {k}", problem)
        macs = float(depth.macs(torch.full_like(lengths, k), lengths).double().mean())
        points.append(StaticPoint(k=k, accuracy=q.value, accuracy_lo=q.ci95[0], accuracy_hi=q.ci95[1], mean_macs=macs,
                                  latency_ms=None, latency_note=NOT_YET))
        answers[k] = all_logits[i]
    rule_q = quality_record(logits, labels, label_std, "test", "deployed rule", problem)
    rule_macs = float(depth.macs(blocks, lengths).double().mean())
    hist = torch.bincount(blocks, minlength=depth.n_blocks + 1)[1:].tolist()
    modal = int(np.argmax(hist)) + 1
    share = hist[modal - 1] / max(sum(hist), 1)
    curve = sorted((p.mean_macs, p.accuracy) for p in points if p.accuracy is not None)
    interp = float(np.interp(rule_macs, [c[0] for c in curve], [c[1] for c in curve])) if curve else None
    margin = rule_q.value - interp if rule_q.value is not None and interp is not None else None
    tol = 1e-9 * max(rule_macs, 1.0)
    higher = [p for p in points if p.mean_macs >= rule_macs - tol]
    hi = min(higher, key=lambda p: p.mean_macs) if higher else max(points, key=lambda p: p.mean_macs)
    lower = [p for p in points if p.mean_macs <= rule_macs + tol]
    lo = max(lower, key=lambda p: p.mean_macs) if lower else None
    b, c = _wins(logits, answers[hi.k], labels, problem)
    p_hi = mcnemar_p(b, c)
    b_lo, c_lo = _wins(logits, answers[lo.k], labels, problem) if lo is not None else (0, 0)
    p_lo = mcnemar_p(b_lo, c_lo) if lo is not None else None
    beats_lo = lo is None or (b_lo > c_lo and p_lo is not None and p_lo < ALPHA)
    fmt = _formatter(rule_q.metric)
    by_k = {p.k: p for p in points}
    test_hi = f"McNemar p = {_p(p_hi)} vs static depth {hi.k} ({b} vs {c} discordant samples)"
    if share >= DEGENERATE_SHARE:
        verdict, m = "degenerate", by_k.get(modal)
        text = (f"degenerate: {100 * share:.1f}% of test samples leave at block {modal}: equivalent to a {modal}-block "
                f"model (rule {fmt(rule_q.value)}"
                + (f", static depth {modal} {fmt(m.accuracy)}" if m is not None else "") + f"; {test_hi})")
    elif margin is not None and margin > 0 and b >= c and beats_lo:
        verdict = "adaptive"
        cheaper = f", significantly above static depth {lo.k} (p = {_p(p_lo)})" if lo is not None else ""
        text = (f"adaptive: the rule's {fmt(rule_q.value)} at {rule_macs / 1e6:.3g} M MACs lies {fmt(margin, True)} above "
                f"the static curve at equal cost ({fmt(interp)}){cheaper}; it matches or beats static depth {hi.k} "
                f"({fmt(hi.accuracy)}, {_more(hi.mean_macs, rule_macs)}; {test_hi})")
    else:
        verdict = "static"
        k = lo.k if lo is not None and not beats_lo else hi.k
        pk = by_k[k]
        where = "above" if margin is not None and margin > 0 else "at or below"
        text = (f"no better than static depth {k}: the rule's {fmt(rule_q.value)} at {rule_macs / 1e6:.3g} M MACs vs "
                f"static depth {k}'s {fmt(pk.accuracy)} at {pk.mean_macs / 1e6:.3g} M ({where} the static curve at equal "
                f"cost: {fmt(margin, True)}; {test_hi}"
                + (f"; vs static depth {lo.k}: p = {_p(p_lo)}" if lo is not None and lo.k != hi.k else "") + ")")
    return StaticDepth(
        metric=rule_q.metric, points=tuple(points), rule_accuracy=rule_q.value, rule_mean_macs=rule_macs,
        static_at_rule_cost=interp, margin=margin, verdict=verdict, verdict_text=text, compared_k=hi.k, discordant=(b, c),
        p_value=p_hi, cheaper_k=lo.k if lo is not None else None, p_value_cheaper=p_lo, modal_block=modal,
        modal_share=share, exit_entropy_bits=exit_entropy_bits(hist), latency_budget="",
        calibration=calibration_marks(calibration, test_sweep))


def _formatter(metric: str):
    def fmt(value: float | None, signed: bool = False) -> str:
        if value is None:
            return "undefined"
        if metric == "accuracy":
            return f"{100 * value:+.1f} points" if signed else f"accuracy {100 * value:.1f}%"
        return f"{value:+.3f}" if signed else f"r = {value:.3f}"
    return fmt


def _p(p: float | None) -> str:
    return "n/a (no sample differs)" if p is None else f"{p:.3g}"


def _more(cost: float, rule: float) -> str:
    return f"{100 * (cost / rule - 1):.0f}% more MACs" if rule > 0 and cost > rule * (1 + 1e-9) else "equal MACs"


def calibration_marks(calibration: Calibration | None, test_sweep: tuple[SweepRow, ...] | None) -> tuple[CalibrationMark, ...]:
    """Each calibration objective's pick on the validation sweep, placed on the test sweep."""
    if calibration is None or not test_sweep or not calibration.sweep:
        return ()
    rows = [r.to_dict() for r in calibration.sweep]
    param, metric, out = calibration.param, calibration.metric, []
    for objective in OBJECTIVES:
        if objective == OBJECTIVES[0] and (calibration.reference_accuracy is None or calibration.tolerance is None):
            continue  # a plugin's calibration without its reference: the cheapest-within-tolerance pick is unknown
        i = choose(rows, calibration.reference_accuracy or 0.0, calibration.tolerance or 0.0, metric, objective)
        value = calibration.sweep[i].rule[param]
        on_test = [r for r in test_sweep if r.rule.get(param) == value]
        if on_test:
            out.append(CalibrationMark(objective=objective, value=float(value), val_accuracy=calibration.sweep[i].score,
                                       accuracy=on_test[0].score, mean_macs=on_test[0].mean_macs,
                                       deployed=float(value) == float(calibration.chosen)))
    return tuple(out)


def budget(settings: LatencySettings) -> dict[str, Any]:
    """The static latencies' timing budget: a fraction of the main latency's (one loop per exit
    block and thread setting must keep the default suite within its time)."""
    return dict(warmup=max(2, settings.warmup // 2), min_iters=max(10, settings.min_iters // 4),
                min_seconds=settings.min_seconds / 6, max_seconds=max(settings.max_seconds / 8, 0.05))


def budget_label(settings: LatencySettings) -> str:
    b = budget(settings)
    return (f"batch 1, reduced budget per depth: {b['warmup']} warm-up calls, at least {b['min_iters']} calls and "
            f"{b['min_seconds']:.3g} s, at most {b['max_seconds']:.3g} s (the headline latency: {settings.warmup}, "
            f"{settings.min_iters}, {settings.min_seconds:g} s, {settings.max_seconds:g} s)")


class StaticUnavailable(Exception):
    """The runtime cannot deploy the static rule (the reason is recorded)."""


@contextmanager
def deployed_rule(adapter: Any, rule: Any) -> Iterator[None]:
    """``adapter`` deploys ``rule`` inside the block (``set_rule``, or the ``rule`` its ``predict``
    reads on the shared encoder), its own rule again after."""
    from ..adapters.encoder_adapter import SpecEncoderBase

    old = exit_rule_of(adapter)
    setter = getattr(adapter, "set_rule", None)
    if not callable(setter):
        if not isinstance(adapter, SpecEncoderBase):
            raise StaticUnavailable(f"{type(adapter).__name__} has no set_rule(rule) to deploy another exit rule")
        setter = lambda r: setattr(adapter, "rule", r)  # noqa: E731  (SpecEncoderBase.predict reads self.rule)
    setter(rule)
    try:
        if exit_rule_of(adapter) is not rule:
            raise StaticUnavailable(f"{type(adapter).__name__} did not take the static rule")
        yield
    finally:
        setter(old)


def measure_static_latency(adapter: Any, singles: list, target: Any, settings: LatencySettings,
                           timed: Any) -> tuple[StaticLatency, ...]:
    """Batch-1 latency at every exit block k with the static rule deployed (``timed(fn, inputs,
    **budget)``: the latency profiler as measure_speed calls it); () for a model without a reference."""
    layout = exit_layout_of(adapter)
    if not applies(adapter, len(layout.exit_blocks)) or not singles:
        return ()
    deployed = implementation_of(adapter)
    out = []
    for k in layout.exit_blocks:
        try:
            with deployed_rule(adapter, Static(k)):
                ran = adapter.predict(*singles[0]).exit_block
                if not bool((ran == k).all()):
                    raise StaticUnavailable(f"the runtime exited at block {int(ran[0])}, not {k}, under the static rule")
                impl = implementation_of(adapter)
                rec = timed(lambda s: adapter.predict(*s), singles, **budget(settings))
            note = budget_label(settings) + f", {rec.threads} thread(s)"
            if impl.engine != deployed.engine:
                note += f"; ran on the {impl.engine} path (the deployed rule runs on {deployed.engine})"
            out.append(StaticLatency(k=k, median_ms=rec.median, note=note))
        except Exception as exc:  # noqa: BLE001 - recorded with its reason, never a silent gap
            out.append(StaticLatency(k=k, median_ms=None, note=f"unavailable: {type(exc).__name__}: {exc}"))
    return tuple(out)


def with_latency(section: StaticDepth, latencies: tuple[StaticLatency, ...], settings_label: str = "") -> StaticDepth:
    """The section with each depth's latency (a depth without one says so)."""
    by_k = {s.k: s for s in latencies}
    points = tuple(replace(p, latency_ms=by_k[p.k].median_ms, latency_note=by_k[p.k].note) if p.k in by_k else
                   replace(p, latency_note=NOT_YET if not latencies else "not measured at this depth")
                   for p in section.points)
    return replace(section, points=points, latency_budget=settings_label)
