"""The reference floors' verdicts on a (task, target) group, every neural model judged.

A neural model is named when it scores below ``bow-linear`` (the floor a model must beat to be
worth its cost) or when ``bow-linear`` dominates it on (test quality, latency, size): at least
as accurate, strictly faster (batch-1 median of each model's fastest thread setting) and
strictly smaller (total bits, embeddings included). Each line gives both figures and whether
the difference is distinguishable. In a report each named model's difference is a statement of
the report's family (:mod:`beexbench.report.family`): an exact McNemar test where both cells keep
per-sample outputs of one split, a paired t over the seeds both have, else an unpaired z-test,
with its interval, its p and its Holm-adjusted p. Judged from the rows alone (no test given), the
line says whether the two rows' intervals overlap (one seed: the record's 95% interval, Wilson for
accuracy; several seeds: mean ± std), and that this is not a paired test.
A model no better than the majority floor is named once, as a failed training.

Pure pandas on aggregated rows (:func:`beexbench.report.aggregate.aggregate`): testable on
hand-built frames.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from .frame import num as _num, Quality, is_floor, quality_of
from .tables import fmt_kib, fmt_ms

JUDGE = "bow-linear"  # the floor every neural model is judged against
MAJORITY = "majority"


def _interval(r) -> tuple[float, float] | None:
    lo, hi = _num(r.get("accuracy_lo")), _num(r.get("accuracy_hi"))
    return None if math.isnan(lo) or math.isnan(hi) else (lo, hi)


def interval_name(r, q: Quality) -> str:
    """What a row's interval is: the record's own (one seed) or mean ± std (several seeds)."""
    return "mean ± std over seeds" if int(r.get("n_seeds", 1) or 1) > 1 else q.interval


@dataclass(frozen=True)
class FloorVerdict:
    """One neural model against the judging floor (values as recorded: fractions, ms, bits)."""

    label: str
    floor: str
    value: float
    floor_value: float
    interval: tuple[float, float] | None
    floor_interval: tuple[float, float] | None
    interval_names: tuple[str, str]  # the model's and the floor's
    latency_ms: float
    floor_latency_ms: float
    size_bits: float
    floor_size_bits: float

    @property
    def below(self) -> bool:
        return self.value < self.floor_value

    @property
    def dominance_known(self) -> bool:
        return not any(math.isnan(x) for x in (self.latency_ms, self.floor_latency_ms, self.size_bits, self.floor_size_bits))

    @property
    def faster(self) -> bool:  # the floor is faster
        return self.dominance_known and self.floor_latency_ms < self.latency_ms

    @property
    def smaller(self) -> bool:  # the floor is smaller
        return self.dominance_known and self.floor_size_bits < self.size_bits

    @property
    def dominated(self) -> bool:
        """The floor at least as accurate, faster and smaller."""
        return self.floor_value >= self.value and self.faster and self.smaller

    @property
    def overlap(self) -> bool | None:
        """Whether the two intervals overlap (not distinguishable); None: an interval is missing."""
        if self.interval is None or self.floor_interval is None:
            return None
        return self.interval[0] <= self.floor_interval[1] and self.floor_interval[0] <= self.interval[1]

    @property
    def named(self) -> bool:
        return self.below or self.dominated


def judge(group: pd.DataFrame, floor: str = JUDGE) -> list[FloorVerdict]:
    """Every neural model of ``group`` (aggregated rows of one task and target) against the most
    accurate row of the ``floor`` model; [] without that floor or its value. Models no better
    than the majority floor are left to :func:`floor_warnings`' failed-training line."""
    floors = group[is_floor(group)]
    ref = floors[(floors["model"] == floor) & floors["accuracy"].notna()]
    if ref.empty:
        return []
    f = ref.loc[ref["accuracy"].idxmax()]
    models = group[~is_floor(group)].dropna(subset=["accuracy"])
    prior = _prior(group)
    out = []
    for _, m in models.iterrows():
        if prior is not None and m["accuracy"] <= prior:
            continue
        out.append(FloorVerdict(
            str(m["label"]), str(f["label"]), float(m["accuracy"]), float(f["accuracy"]), _interval(m), _interval(f),
            (interval_name(m, quality_of(group)), interval_name(f, quality_of(group))),
            _num(m.get("latency_ms")), _num(f.get("latency_ms")), _num(m.get("size_bits")), _num(f.get("size_bits"))))
    return sorted(out, key=lambda v: (-v.value, v.label))


def _prior(group: pd.DataFrame) -> float | None:
    """The majority floor's test accuracy (classification only), or None."""
    if quality_of(group).key != "accuracy":
        return None
    floors = group[is_floor(group)]
    majority = floors[(floors["model"] == MAJORITY) & floors["accuracy"].notna()]
    return None if majority.empty else float(majority["accuracy"].max())


def _shower(q: Quality):
    return (lambda v: f"{v * 100:.1f}%") if q.key == "accuracy" else (lambda v: f"{v:.3f}")


def _bounds(iv: tuple[float, float] | None, q: Quality) -> str:
    if iv is None:
        return ""
    return f" [{iv[0] * 100:.1f}, {iv[1] * 100:.1f}]" if q.key == "accuracy" else f" [{iv[0]:.3f}, {iv[1]:.3f}]"


def _distinguishable(v: FloorVerdict, q: Quality) -> str:
    a, b = v.interval_names
    which = f"their {a}s" if a == b else f"the {a} and the {b}"
    if v.overlap is None:
        return "whether the difference is distinguishable is not judged: an interval is missing"
    paired = "a paired test such as an exact McNemar" if q.key == "accuracy" else "a paired test"
    return (("not distinguishable by intervals: " + which + " overlap" if v.overlap
             else "distinguishable by intervals: " + which + " do not overlap")
            + f" (intervals, not {paired}: the report's rows carry no per-sample outputs)")


def _costs(v: FloorVerdict) -> str:
    return (f"{'faster' if v.faster else 'not faster'} ({fmt_ms(v.floor_latency_ms)} vs {fmt_ms(v.latency_ms)} ms) and "
            f"{'smaller' if v.smaller else 'not smaller'} ({fmt_kib(v.floor_size_bits)} vs {fmt_kib(v.size_bits)} KiB)")


def _tested(t) -> str:
    """A family test's clause: difference, interval, method, p and Holm p, verdict."""
    return f"{t.verdict} ({t.shown()}; {t.method}; {t.p_text()})"


def verdict_sentence(v: FloorVerdict, title: str, q: Quality, test=None) -> str:
    """The warning line naming one model below or dominated by the floor; ``test``: its statement's
    test (:class:`beexbench.report.significance.Test`), else the intervals' overlap is said."""
    show = _shower(q)
    mine, theirs = f"{show(v.value)}{_bounds(v.interval, q)}", f"{show(v.floor_value)}{_bounds(v.floor_interval, q)}"
    diff = (v.floor_value - v.value) * 100  # in q.delta: points of accuracy, hundredths of Pearson r
    if v.below:
        text = (f"{title}: {v.label} scores {mine} test {q.name}, {diff:.1f} {q.delta} below the {v.floor} reference "
                f"floor's {theirs}; " + (_tested(test) if test is not None and test.tested else _distinguishable(v, q)) + ".")
    else:
        text = f"{title}: {v.label} scores {mine} test {q.name}, no more than the {v.floor} reference floor's {theirs}"
        text += f"; {_tested(test)}." if test is not None and test.tested else "."
    if v.dominated:
        good = "at least as accurate" if q.key == "accuracy" else f"at least as high a {q.name}"
        return text + f" {v.floor} dominates it on ({q.name}, latency, size): {good}, {_costs(v)}."
    if not v.dominance_known:
        return text + f" Dominance not judged: latency or size missing for {v.label} or {v.floor}."
    return text + f" Not dominated: {v.floor} is {_costs(v)}."


def floor_warnings(group: pd.DataFrame, title: str, tests: dict | None = None) -> list[str]:
    """The reference floors' verdicts on a (task, target) group, one line each: when the best
    neural model scores below a floor (bow-linear, or majority); each neural model below
    bow-linear or dominated by it (:func:`judge`); and each neural model no better than the
    majority floor (its training failed: it learned at most the class prior). ``tests``: the
    section's statements (:mod:`beexbench.report.family`), keyed ``("floor", model, floor)``."""
    floor = is_floor(group)
    models = group[~floor].dropna(subset=["accuracy"])
    floors = group[floor].dropna(subset=["accuracy"])
    if models.empty or floors.empty:
        return []
    q = quality_of(group)
    show = _shower(q)
    out = []
    best, top = models.loc[models["accuracy"].idxmax()], floors.loc[floors["accuracy"].idxmax()]
    if best["accuracy"] < top["accuracy"]:
        test = (tests or {}).get(("floor", best["label"], top["label"]))
        if test is not None and test.tested:  # "beats" only when the best model's gap is distinguishable
            said = ("a bag-of-words baseline beats every neural model here" if test.distinguishable()
                    else "no neural model is distinguishably better or worse than it here (see the line on that model)")
        else:
            said = "no paired test was possible, so whether it beats them is not established (see the line on that model)"
        out.append(f"{title}: the best neural model, {best['label']}, scores {show(best['accuracy'])} test {q.name}, below the "
                   f"{top['label']} reference floor's {show(top['accuracy'])}: {said}.")
    out += [verdict_sentence(v, title, q, (tests or {}).get(("floor", v.label, v.floor))) for v in judge(group) if v.named]
    prior = _prior(group)
    if prior is not None:
        for _, m in models[models["accuracy"] <= prior].sort_values("label").iterrows():
            out.append(f"{title}: {m['label']} scores {show(m['accuracy'])} test accuracy, no better than the majority floor's "
                       f"{show(prior)} (always the most frequent label): its training failed here; read its row as a failed run, "
                       f"not as what the method can do.")
    return out


# the Pareto figures' caption sentence for the floors drawn as points (beexbench.report.plots.floor_points)
FLOOR_POINTS = (" The floors are also drawn as points at their own cost (star: bow-linear, pentagon: majority), labelled: a model to the "
                "right of and below a floor's point is dominated by it.")
