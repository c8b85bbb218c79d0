""""Where the speed-up comes from": the speed ladder of one (task, target) section.

Each step changes one thing, at **equal depth** and **equal thread setting**, and is a latency
ratio (batch 1, median; > 1: the step made it faster) with an interval and each side's accuracy:

1. fp32 eager (torch) -> ``fp32-ort-graph`` (the same network, one ONNX Runtime call)
2. ``fp32-ort-graph`` -> ``int8-ort-graph`` (ORT dynamic int8)
3. ``int8-ort-graph`` -> ``beexformer-packed`` (1-bit weights and activations, the packed engine)
4. ``beexformer-packed`` at static depth L -> with its deployed exit rule (+ early exit)

"Equal depth": each model's static-depth latency (``static_depth`` record section: ``points``
with ``k`` and ``latency_ms``) at the common k = the modal exit block of beexformer-packed's rule.
Where a model has no static-depth latency at k, its deployed-rule latency is used, its mean exit
depth shown, and the step labelled "depths differ". The interval of a ratio a/b combines the
two sides' bootstrap intervals of the median in log space (independent measurements):
``exp(log(a/b) ± sqrt(ha² + hb²))`` with ``h = log(hi/lo) / 2``; a static-depth point carries the
relative interval of its model's batch-1 latency. Beside the ladder, the **per-block overhead**
of ``fp32-ort`` (one session per block, the rule in Python): 1 - (fp32-ort-graph latency /
fp32-ort latency) with the same rule deployed.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from ._html import esc, figure

RUNGS = (("fp32", "fp32 eager (torch)"), ("fp32-ort-graph", "fp32, ONNX Runtime, one call"),
         ("int8-ort-graph", "int8, ONNX Runtime, one call"), ("beexformer-packed", "1-bit packed engine"))
PACKED, PER_BLOCK, ONE_CALL = "beexformer-packed", "fp32-ort", "fp32-ort-graph"
DEPTHS_DIFFER = "depths differ"
LADDER_THREADS = 1  # every rung at one thread setting: the static-depth latencies' (runner.isolate)


@dataclass(frozen=True)
class Side:
    model: str
    accuracy: float | None
    latency: float  # ms
    lo: float
    hi: float
    depth: str  # "k=2" or "mean exit 2.31 (deployed rule)"
    threads: str
    static: bool  # a static-depth latency


@dataclass(frozen=True)
class Step:
    name: str
    before: Side
    after: Side
    ratio: float
    lo: float
    hi: float
    label: str  # "" or DEPTHS_DIFFER / a thread mismatch


def ratio_interval(a: float, a_lo: float, a_hi: float, b: float, b_lo: float, b_hi: float) -> tuple[float, float, float]:
    """a / b and its interval, the sides' intervals combined in log space."""
    r = a / b
    ha = math.log(a_hi / a_lo) / 2 if a_lo > 0 and a_hi >= a_lo else 0.0
    hb = math.log(b_hi / b_lo) / 2 if b_lo > 0 and b_hi >= b_lo else 0.0
    h = math.hypot(ha, hb)
    return r, r * math.exp(-h), r * math.exp(h)


def _get(obj, key, default=None):
    if obj is None:
        return default
    if isinstance(obj, dict):
        return obj.get(key, default)
    return getattr(obj, key, default)


def _num(v) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else f


def _rows(g: pd.DataFrame) -> dict[str, pd.Series]:
    col = "model" if "model" in g else "label"
    return {str(r[col]): r for _, r in g.iterrows()}


def modal_block(row: pd.Series | None) -> int | None:
    """The modal exit block of a model's deployed rule: its static-depth record's, else its exit histogram's."""
    if row is None:
        return None
    m = _get(_static_records(row)[0] if _static_records(row) else None, "modal_block")
    if _num(m) is not None:
        return int(m)
    hist = row.get("exit_histogram")
    if isinstance(hist, (list, tuple)) and hist and max(hist) > 0:
        return 1 + max(range(len(hist)), key=lambda i: hist[i])
    return None


def _static_records(row: pd.Series) -> list:
    """The row's static-depth records: the aggregated column is ``[(seed, record), ...]`` (one per
    seed, ``per_seed``); a single record (a dict or section) is read as one seed's."""
    value = row.get("static_depth")
    if isinstance(value, (list, tuple)):
        return [v[1] if isinstance(v, (list, tuple)) and len(v) == 2 else v for v in value if v]
    return [value] if value else []


def _static_point(row: pd.Series, k: int):
    """The point at depth ``k``, latency and accuracy the mean over the seeds that measured it."""
    found = [p for rec in _static_records(row) for p in (_get(rec, "points", None) or ())
             if int(_get(p, "k", -1)) == k and _num(_get(p, "latency_ms")) is not None]
    if not found:
        return None
    accs = [a for a in (_num(_get(p, "accuracy")) for p in found) if a is not None]
    return {"k": k, "latency_ms": sum(float(_get(p, "latency_ms")) for p in found) / len(found),
            "accuracy": sum(accs) / len(accs) if accs else None}


def side(row: pd.Series, k: int | None) -> Side | None:
    """A model's latency at static depth ``k`` (None: its deployed rule), with its interval."""
    med, lo, hi = (_num(row.get(c)) for c in ("latency_ms", "latency_lo", "latency_hi"))
    if med is None:
        return None
    lo, hi = lo or med, hi or med
    threads = str(row.get("latency_threads", "")) or "?"
    model = str(row.get("model", row.get("label")))
    point = _static_point(row, k) if k is not None else None
    if point is not None:
        lat = float(_get(point, "latency_ms"))
        acc = _num(_get(point, "accuracy"))  # static latencies are measured at the fewest threads (runner.isolate)
        return Side(model, acc, lat, lat * lo / med, lat * hi / med, f"k={k}", str(LADDER_THREADS), True)
    mean_exit = _num(row.get("mean_exit"))
    depth = "deployed rule" + (f", mean exit {mean_exit:.2f}" if mean_exit is not None else "")
    by_threads = row.get("latency_by_threads")
    common = _num(by_threads.get(LADDER_THREADS, by_threads.get(str(LADDER_THREADS)))) if isinstance(by_threads, dict) else None
    if common is not None:  # the deployed rule at the ladder's common thread setting (its interval's width kept)
        return Side(model, _num(row.get("accuracy")), common, common * lo / med, common * hi / med, depth,
                    str(LADDER_THREADS), False)
    return Side(model, _num(row.get("accuracy")), med, lo, hi, depth, threads, False)


def _step(name: str, a: Side | None, b: Side | None, same_depth_needed: bool = True) -> Step | None:
    if a is None or b is None:
        return None
    r, lo, hi = ratio_interval(a.latency, a.lo, a.hi, b.latency, b.lo, b.hi)
    labels = []
    if same_depth_needed and not (a.static and b.static and a.depth == b.depth):
        labels.append(DEPTHS_DIFFER)
    if a.threads != b.threads:
        labels.append(f"threads differ ({a.threads} vs {b.threads})")
    return Step(name, a, b, r, lo, hi, "; ".join(labels))


def ladder(g: pd.DataFrame) -> tuple[list[Step], int | None, float | None]:
    """The ladder's steps of one section's aggregated rows, the common depth k, and fp32-ort's
    per-block overhead (None where a side is missing)."""
    rows = _rows(g)
    k = modal_block(rows.get(PACKED))
    sides = {m: side(rows[m], k) for m, _ in RUNGS if m in rows}
    steps = []
    for (m1, n1), (m2, n2) in zip(RUNGS, RUNGS[1:]):
        s = _step(f"{n1} → {n2}", sides.get(m1), sides.get(m2))
        if s:
            steps.append(s)
    if PACKED in rows:
        n = _num(rows[PACKED].get("n_blocks"))
        full = side(rows[PACKED], int(n)) if n is not None else None
        deployed = side(rows[PACKED], None)
        s = _step("1-bit packed, static depth L → + early exit (deployed rule)", full if full and full.static else None,
                  deployed, same_depth_needed=False)
        if s:
            steps.append(s)
    overhead = None
    if PER_BLOCK in rows and ONE_CALL in rows:
        a, b = side(rows[PER_BLOCK], None), side(rows[ONE_CALL], None)
        if a and b and a.latency > 0:
            overhead = 1.0 - b.latency / a.latency
    return steps, k, overhead


def _acc(s: Side) -> str:
    return "—" if s.accuracy is None else f"{s.accuracy * 100:.1f}"


def ladder_frame(steps: list[Step]) -> pd.DataFrame:
    return pd.DataFrame([{"step": s.name, "before": s.before.model, "after": s.after.model, "ratio": s.ratio,
                          "ratio_lo": s.lo, "ratio_hi": s.hi, "before_ms": s.before.latency, "after_ms": s.after.latency,
                          "before_accuracy": s.before.accuracy, "after_accuracy": s.after.accuracy,
                          "before_depth": s.before.depth, "after_depth": s.after.depth, "label": s.label} for s in steps])


def ladder_plot(steps: list[Step], title: str) -> str:
    import matplotlib.pyplot as plt

    from .plots import text, to_data_uri

    fig, ax = plt.subplots(figsize=(6.4, 0.6 + 0.55 * len(steps)))
    names = [text(s.name) for s in steps][::-1]
    vals = [s.ratio for s in steps][::-1]
    err = [[s.ratio - s.lo for s in steps][::-1], [s.hi - s.ratio for s in steps][::-1]]
    ax.barh(names, vals, xerr=err, color=["#c44e52" if s.label else "#4c72b0" for s in steps][::-1], capsize=3)
    ax.axvline(1.0, color="k", lw=0.8, ls="--")
    ax.set_xscale("log")
    ax.set_xlabel("speed-up of the step (× faster, log scale; red: depths or threads differ)")
    ax.set_title(text(title))
    return to_data_uri(fig)


def _test_cells(t) -> tuple[str, str]:
    """A step's test (report.family): "×1.80 [1.62, 2.01] (method)" and "p; Holm p: verdict"."""
    if t is None:
        return "—", "no test in this report"
    return f"{t.shown()} ({t.method})", f"{t.p_text()}: {t.verdict}"


def ladder_html(g: pd.DataFrame, title: str, figures: bool = True, tests: dict | None = None) -> str:
    """The section's "where the speed-up comes from" table and bar figure ("" when no step applies);
    ``tests``: the section's statements (:mod:`beexbench.report.family`), keyed ``("ladder", step)``."""
    steps, k, overhead = ladder(g)
    if not steps and overhead is None:
        return ""
    tests = tests or {}
    head = ["step", "speed-up (× faster)", "95% interval", "before: ms, accuracy, depth", "after: ms, accuracy, depth", "note",
            "test: speed-up [95% interval]", "p, Holm-adjusted p: verdict"]
    body = "".join(
        "<tr>" + "".join(f'<td class="{"l" if i == 0 else ""}">{esc(c)}</td>' for i, c in enumerate((
            s.name, f"{s.ratio:.2f}", f"{s.lo:.2f}–{s.hi:.2f}",
            f"{s.before.latency:.3f}, {_acc(s.before)}, {s.before.depth}",
            f"{s.after.latency:.3f}, {_acc(s.after)}, {s.after.depth}", s.label,
            *_test_cells(tests.get(("ladder", s.name)))))) + "</tr>" for s in steps)
    table = ('<table data-speed-ladder><thead><tr>' + "".join(f"<th>{esc(h)}</th>" for h in head)
             + f"</tr></thead><tbody>{body}</tbody></table>")
    notes = [f"Batch-1 median latency; equal depth = static depth k={k} (the modal exit block of {PACKED}'s deployed rule)"
             if k is not None else f"No common depth: {PACKED} has no exit record; each side's deployed rule is used",
             "intervals: the two sides' bootstrap 95% intervals of the median combined in log space; a static-depth "
             "latency carries its model's batch-1 interval width. Each side is timed in its own measuring process, and "
             "these intervals cover the noise within a process only, not between processes (a loaded or shared host "
             "moves whole processes): with one seed, read a step as a measurement of this run; repeated runs (--seeds) "
             "give the spread, which the test below then uses"]
    if any(k[0] == "ladder" for k in tests):
        notes.append("test: each step is a statement of the report's family (Holm over every comparison the report makes, "
             "α = 0.05): a paired bootstrap over the same inputs where both sides are timed on them (one seed), a paired "
             "t of log latency over the seeds both have, else the intervals above, said “unpaired”")
    if overhead is not None:
        notes.append(f"per-block overhead of {PER_BLOCK} (one session per block, exit rule in Python): "
                     f"1 − ({ONE_CALL} / {PER_BLOCK}) latency at the same deployed rule = {overhead:.0%}")
    out = table + "".join(f'<p class="note" data-speed-ladder-note>{esc(n)}.</p>' for n in notes)
    if figures and steps:
        out += f'<div class="figs">{figure(ladder_plot(steps, f"Speed ladder — {title}"), f"speed ladder, {title}")}</div>'
    return out
