"""The report's pairwise statements carry their significance (issue 29): hand-built records with
known per-sample outputs; McNemar p-values and Holm factors computed by hand (binomial sums), not
by the code under test."""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from beexbench.report import build_report
from beexbench.report.aggregate import aggregate
from beexbench.report.dominance import significant_front
from beexbench.report.family import paired_frame, report_family, section_tests
from beexbench.report.floors import floor_warnings
from beexbench.report.tables import summary_table
from beexbench.results.costs import Latency
from beexbench.results.samples import Samples, split_digest
from test_report import make_record, write_run

N = 400
LABELS = np.arange(N) % 2
DIGEST = split_digest(np.zeros((N, 4)), np.full(N, 4), LABELS)
BASE = np.arange(N) % 5 != 0  # 320 of 400 right


def mcnemar_p(b: int, c: int) -> float:
    """Exact two-sided McNemar by hand: 2 x the binomial(b + c, 1/2) tail of min(b, c), at most 1."""
    n, k = b + c, min(b, c)
    return 1.0 if n == 0 else min(1.0, 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n)


def rec(model, correct, *, seed=0, per_input=None, total_bits=8_000_000, floor=False, digest=DIGEST):
    """``make_record`` with per-sample outputs (``correct``) and batch-1 latency of 64 inputs x 4
    repeats (``per_input`` ms each; default 1.0 .. 3.0)."""
    r = make_record(model, seed=seed, n=N, total_bits=total_bits)
    values = np.tile(np.linspace(1.0, 3.0, 64) if per_input is None else per_input, 4)
    lat = Latency.from_values(values.tolist(), timer="perf_counter_ns", threads=2, batch_size=1, n_inputs=64)
    pred = np.where(correct, LABELS, 1 - LABELS)
    samples = Samples.pack(pred, LABELS, np.full(N, 2), digest=digest, regression=False)
    m = r.metrics
    m = dataclasses.replace(m, batch1=lat, accuracy=dataclasses.replace(
        m.accuracy, value=float(correct.mean()), correct=int(correct.sum()), n=N), extra={**m.extra, "samples": samples})
    out = dataclasses.replace(r, metrics=m)
    if floor:
        out.model = {**out.model, "role": "reference floor"}
    return out


def changed(base, lose: int, gain: int):
    """``base`` with its first ``lose`` right answers made wrong and its first ``gain`` wrong ones right."""
    out = base.copy()
    out[np.flatnonzero(base)[:lose]] = False
    out[np.flatnonzero(~base)[:gain]] = True
    return out


def test_headline_pair_is_distinguishable_with_the_hand_computed_mcnemar_and_holm_factor(tmp_path):
    # beexformer loses 20 of fp32's right answers and gains 6: discordant (20, 6); latency identical
    records = [rec("fp32", BASE), rec("beexformer", changed(BASE, 20, 6))]
    family = report_family(paired_frame(records))
    (section,) = family.values()
    q, lat = section[("headline", "beexformer", "fp32", "quality")], section[("headline", "beexformer", "fp32", "latency")]
    p = mcnemar_p(20, 6)  # 0.00936...
    assert q.method.startswith("exact McNemar on 400 test samples, one seed (0)")
    assert q.p_value == pytest.approx(p, rel=1e-9) and q.change == pytest.approx(-14 / N)
    # the family: the quality test and the latency test (identical inputs: ratio 1, p 1); Holm x2 on the smaller
    assert lat.method.startswith("paired bootstrap") and lat.change == pytest.approx(1.0) and lat.p_value == 1.0
    assert q.family == 2 and q.p_adjusted == pytest.approx(2 * p, rel=1e-9) and lat.p_adjusted == 1.0
    assert q.verdict == "distinguishable" and lat.verdict == "not distinguishable"
    html = build_report(write_run(tmp_path / "res", "run-a", records), tmp_path / "r.html").read_text()
    assert "accuracy, beexformer − fp32: -3.5 pp" in html
    assert f"p = {p:.3g}, Holm-adjusted p = {2 * p:.3g} over the report&#x27;s 2 comparisons): distinguishable" in html


def test_an_identical_pair_is_not_distinguishable():
    family = report_family(paired_frame([rec("fp32", BASE), rec("beexformer", BASE.copy())]))
    q = next(iter(family.values()))[("headline", "beexformer", "fp32", "quality")]
    assert q.p_value == 1.0 and q.change == 0.0 and q.verdict == "not distinguishable"
    assert q.sentence().endswith(": not distinguishable")


def test_discordant_but_balanced_is_not_distinguishable_after_holm():
    # (12, 3): raw p = 0.035 < 0.05, but Holm over two tests doubles it to 0.070
    family = report_family(paired_frame([rec("fp32", BASE), rec("beexformer", changed(BASE, 12, 3))]))
    q = next(iter(family.values()))[("headline", "beexformer", "fp32", "quality")]
    assert q.p_value == pytest.approx(mcnemar_p(12, 3)) and q.p_value < 0.05
    assert q.p_adjusted == pytest.approx(2 * mcnemar_p(12, 3)) and q.verdict == "not distinguishable"


def test_seeds_are_compared_by_a_paired_t_over_the_common_seeds():
    # fp32 80% both seeds; beexformer loses 8 then 24 samples: differences -2 and -6 points
    records = [rec("fp32", BASE, seed=0), rec("fp32", BASE, seed=1),
               rec("beexformer", changed(BASE, 8, 0), seed=0), rec("beexformer", changed(BASE, 24, 0), seed=1)]
    tests = section_tests(paired_frame(records))
    q = tests[("headline", "beexformer", "fp32", "quality")]
    d = np.array([-8, -24]) / N
    t = d.mean() / (d.std(ddof=1) / math.sqrt(2))
    assert q.method == "paired t over 2 seeds (0, 1)" and q.change == pytest.approx(d.mean())
    assert q.p_value == pytest.approx(1 - 2 / math.pi * math.atan(abs(t)))  # t with 1 df is Cauchy


def test_floor_line_names_the_mcnemar_test_and_its_holm_p():
    floor = rec("bow-linear", BASE, floor=True, total_bits=1_000)
    model = rec("transformer", changed(BASE, 30, 0))  # below the floor by 30 samples, all discordant one way
    cells = paired_frame([floor, model])
    tests = next(iter(report_family(cells).values()))
    t = tests[("floor", "transformer", "bow-linear")]
    assert t.p_value == pytest.approx(mcnemar_p(30, 0)) and t.family == 1 and t.p_adjusted == t.p_value
    (line,) = [w for w in floor_warnings(aggregate(cells), "rt on cpu", tests) if "transformer scores" in w]
    assert "distinguishable (-7.5 pp [" in line and "exact McNemar on 400 test samples, one seed (0)" in line
    assert f"p = {mcnemar_p(30, 0):.3g}, Holm-adjusted p = " in line and "by intervals" not in line


def test_a_point_dominated_only_within_noise_stays_on_the_front_and_is_named():
    big = rec("fp32", BASE, total_bits=10_000_000)  # 80.0%
    small = rec("beexformer", changed(BASE, 0, 2), total_bits=8_000_000)  # 80.5%, smaller: geometric dominance
    bad = rec("transformer", changed(BASE, 80, 0), total_bits=12_000_000)  # 60%, bigger: dominated for real
    cells = paired_frame([big, small, bad])
    g = aggregate(cells)
    front, kept = significant_front(g, cells, "size_bits", "size")
    on = dict(zip(g["label"], front))
    assert on == {"beexformer": True, "fp32": True, "transformer": False}
    (line,) = kept
    assert line.startswith("fp32: dominated only within noise by beexformer (accuracy, beexformer − fp32: +0.5 pp")
    assert f"p = {mcnemar_p(0, 2):.3g}" in line  # 0.5
    geometric, _ = significant_front(g, None, "size_bits")
    assert not dict(zip(g["label"], geometric))["fp32"]  # without the tests it would lose its ring
    table = summary_table(g, cells)
    fronts = {row[0]: row[-1] for row in table.rows}
    assert "size" in fronts["fp32"] and "size" not in fronts["transformer"]


def test_speed_ladder_step_is_a_paired_bootstrap_over_the_same_inputs():
    before = rec("fp32", BASE, per_input=np.linspace(2.0, 6.0, 64))
    after = rec("fp32-ort-graph", BASE, per_input=np.linspace(1.0, 3.0, 64))  # every input exactly 2x faster
    tests = section_tests(paired_frame([before, after]))
    (step,) = [t for k, t in tests.items() if k[0] == "ladder"]
    assert step.method.startswith("paired bootstrap of the median ratio") and "over the same 64 inputs" in step.method
    # every resample's ratio is exactly 2: none on the other side of 1, so p is the 1/2000 floor, doubled
    assert step.change == pytest.approx(2.0) and step.lo == pytest.approx(2.0) and step.p_value == pytest.approx(0.001)


def test_different_splits_are_never_paired():
    other = split_digest(np.ones((N, 4)), np.full(N, 4), LABELS)
    records = [rec("fp32", BASE), rec("beexformer", changed(BASE, 20, 6), digest=other)]
    q = section_tests(paired_frame(records))[("headline", "beexformer", "fp32", "quality")]
    assert q.method.startswith("unpaired two-proportion z")


def test_static_depth_verdicts_enter_the_family_with_their_recorded_mcnemar():
    from beexbench.report.family import static_tests
    from beexbench.report.significance import adjusted
    import pandas as pd

    sd = {"metric": "accuracy", "points": [{"k": 2, "accuracy": 0.78}, {"k": 3, "accuracy": 0.80}], "rule_accuracy": 0.82,
          "compared_k": 3, "discordant": (12, 4), "p_value": mcnemar_p(12, 4), "cheaper_k": 2, "p_value_cheaper": None}
    g = pd.DataFrame([{"label": "beexformer", "static_depth": [(0, sd)]}])
    cells = pd.DataFrame([{"label": "beexformer", "seed": 0, "accuracy_n": N}])
    tests = static_tests(cells, g)
    k3, k2 = tests[("static", "beexformer", 0, "compared")], tests[("static", "beexformer", 0, "cheaper")]
    se = math.sqrt(16 - 8 ** 2 / N) / N  # Wald interval of the paired difference (12 - 4) / N
    assert k3.change == pytest.approx(0.02) and k3.lo == pytest.approx(8 / N - 1.96 * se)
    assert k2.p_value == 1.0  # None in the record: no sample differs
    k3, k2 = adjusted([k3, k2])
    assert k3.p_adjusted == pytest.approx(2 * mcnemar_p(12, 4)) and k3.verdict == "not distinguishable"  # 0.077, then 0.15
