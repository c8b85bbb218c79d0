"""The report's family of pairwise statements (issue 29): every comparison a report states, tested
(:mod:`beexbench.report.significance`) and Holm-adjusted together, one family per report.

The statements, per (task, target) section:

* ``("headline", subject, reference, "quality" | "latency")``: each subject model (BEExformer)
  against the full-precision reference (fp32) of its setting: quality difference and speed-up;
* ``("floor", model, floor)``: each neural model the floors paragraph names (below bow-linear or
  dominated by it), its quality against the floor's;
* ``("static", model, seed, "compared" | "cheaper")``: the early-exit rule against static depth,
  the exact tests its record carries (``metrics.static_depth``: ``p_value``, ``p_value_cheaper``);
* ``("ladder", step)``: each step of the speed ladder.

Computed in the report's own process before the sections are built (the correction needs every
raw p), so each section receives its statements' adjusted tests (``SectionJob.tests``).
"""
from __future__ import annotations

import math

import pandas as pd

from ..adapters.roles import FULL_PRECISION_REFERENCE, SUBJECT
from .aggregate import aggregate
from .floors import judge
from .frame import has_role, quality_of, records_frame
from .significance import LatSide, Test, adjusted, by_seed, pair_data, quality_test, speedup_test
from .speed_ladder import ladder, side

Key = tuple


def headline_tests(cells: pd.DataFrame, g: pd.DataFrame) -> dict[Key, Test]:
    """Each subject model against the full-precision reference of its setting (of any, when none shares it)."""
    q = quality_of(g)
    subjects, refs = g[has_role(g, SUBJECT.kind)], g[has_role(g, FULL_PRECISION_REFERENCE.kind)]
    out: dict[Key, Test] = {}
    for _, s in subjects.iterrows():
        same = refs[refs["setting"] == s["setting"]]
        for _, r in (same if len(same) else refs).iterrows():
            new, base = str(s["label"]), str(r["label"])
            out[("headline", new, base, "quality")] = quality_test(cells, base, new, f"{q.name}, {new} − {base}", q.key)
            out[("headline", new, base, "latency")] = speedup_test(
                _sides(cells, base, None), _sides(cells, new, None), f"latency, {new} vs {base} (× faster)")
    return out


def floor_tests(cells: pd.DataFrame, g: pd.DataFrame) -> dict[Key, Test]:
    q = quality_of(g)
    return {("floor", v.label, v.floor): quality_test(cells, v.floor, v.label, f"{q.name}, {v.label} − {v.floor}", q.key)
            for v in judge(g) if v.named}


def _static_test(what: str, metric: str, change: float, p, discordant=None, n: float = math.nan) -> Test:
    p = 1.0 if p is None else float(p)  # None: no sample differs between the two
    lo = hi = math.nan
    if discordant is not None and metric == "accuracy" and n > 0:
        b, c = discordant
        se = math.sqrt(max(b + c - (b - c) ** 2 / n, 0.0)) / n
        lo, hi = (b - c) / n - 1.96 * se, (b - c) / n + 1.96 * se
    how = ("exact McNemar on the test samples (recorded with the cell)" if metric == "accuracy"
           else "exact sign test of which prediction is closer (recorded with the cell)")
    return Test(what, "pp" if metric == "accuracy" else "(r ×100)", change, lo, hi, p, how)


def static_tests(cells: pd.DataFrame, g: pd.DataFrame) -> dict[Key, Test]:
    """The deployed rule against static depth, per seed, from the record's own exact tests."""
    out: dict[Key, Test] = {}
    if "static_depth" not in g:
        return out
    for _, r in g.iterrows():
        per_seed = r["static_depth"] if isinstance(r["static_depth"], list) else []
        seeds = by_seed(cells, str(r["label"]))
        for seed, s in per_seed:
            acc = {p["k"]: p["accuracy"] for p in s["points"]}
            rule = s.get("rule_accuracy")
            n = float(seeds[seed]["accuracy_n"]) if seed in seeds and "accuracy_n" in seeds[seed] else math.nan

            def diff(k):
                return math.nan if rule is None or acc.get(k) is None else rule - acc[k]

            label, k = str(r["label"]), s["compared_k"]
            out[("static", label, seed, "compared")] = _static_test(
                f"{label} (seed {seed}), exit rule − static depth {k}", s["metric"], diff(k), s.get("p_value"),
                s.get("discordant"), n)
            if s.get("cheaper_k") is not None:
                kc = s["cheaper_k"]
                out[("static", label, seed, "cheaper")] = _static_test(
                    f"{label} (seed {seed}), exit rule − static depth {kc} (cheaper)", s["metric"], diff(kc),
                    s.get("p_value_cheaper"))
    return out


def _sides(cells: pd.DataFrame, label: str, k: int | None) -> dict[int, LatSide]:
    """Per seed: the cell's batch-1 latency (``k`` None: its deployed rule, with per-input values)
    or its static-depth latency at ``k`` (no per-input values: static depths are timed apart)."""
    out = {}
    for seed, row in by_seed(cells, label).items():
        sd = side(row, k)
        if sd is None or (k is not None and not sd.static):
            continue
        p = row.get("paired") if k is None else None
        out[seed] = LatSide(sd.latency, sd.lo, sd.hi, getattr(p, "latency", None), getattr(p, "digest", None))
    return out


def ladder_tests(cells: pd.DataFrame, g: pd.DataFrame) -> dict[Key, Test]:
    steps, _, _ = ladder(g)
    labels = {str(m): str(lab) for m, lab in zip(g["model"], g["label"])} if "model" in g else {}
    out: dict[Key, Test] = {}
    for st in steps:
        sides = []
        for sd in (st.before, st.after):
            k = int(sd.depth[2:]) if sd.static and sd.depth.startswith("k=") else None
            sides.append(_sides(cells, labels.get(sd.model, sd.model), k))
        out[("ladder", st.name)] = speedup_test(sides[0], sides[1], f"speed-up, {st.name}")
    return out


def section_tests(cells: pd.DataFrame) -> dict[Key, Test]:
    """Every statement of one section's cells (raw p-values)."""
    g = aggregate(cells)
    if g.empty:
        return {}
    return {**headline_tests(cells, g), **floor_tests(cells, g), **static_tests(cells, g), **ladder_tests(cells, g)}


def paired_frame(records: list) -> pd.DataFrame:
    """The report's frame of ``records`` (:func:`beexbench.report.frame.records_frame`) with each
    cell's :class:`~beexbench.report.significance.PairData` in a ``paired`` column (report only:
    ``beexbench results export`` writes the frame without it)."""
    frame = records_frame(records)
    frame["paired"] = [pair_data(r) for r in records]
    return frame


def report_family(cells: pd.DataFrame, method: str = "holm") -> dict[tuple[str, str], dict[Key, Test]]:
    """Every section's statements, p-values adjusted together (one family per report), by
    ``(task, target_label)``."""
    raw: list[tuple[tuple[str, str], Key, Test]] = []
    for (task, target), group in cells.groupby(["task", "target_label"], sort=True):
        raw += [((str(task), str(target)), k, t) for k, t in section_tests(group).items()]
    tests = adjusted([t for _, _, t in raw], method)
    out: dict[tuple[str, str], dict[Key, Test]] = {}
    for (sec, key, _), t in zip(raw, tests):
        out.setdefault(sec, {})[key] = t
    return out

