"""The reference floors judge every neural model (issue 28): below bow-linear, or dominated by it on
(quality, latency, size), each named with both figures and whether the intervals tell them apart;
the floors are points on every Pareto figure. Hand-built aggregated frames, hand-computed verdicts."""
from __future__ import annotations

import math

import pandas as pd
import pytest

from beexbench.report.floors import floor_warnings, judge

TITLE = "rt on cpu"


def row(model, acc, lo, hi, *, latency=1.0, size=8_000_000, floor=False, seeds=1, metric="accuracy"):
    return {"task": "rt", "target_label": "cpu", "label": model, "model": model, "setting": "default",
            "role": "reference floor" if floor else "baseline", "metric": metric, "n_seeds": seeds,
            "accuracy": acc, "accuracy_lo": lo, "accuracy_hi": hi, "latency_ms": latency, "size_bits": size}


def frame(*rows) -> pd.DataFrame:
    return pd.DataFrame(list(rows))


BOW = row("bow-linear", 0.76, 0.72, 0.80, latency=0.02, size=100_000, floor=True)
MAJ = row("majority", 0.50, 0.46, 0.54, latency=0.01, size=64, floor=True)


def test_every_model_below_or_dominated_is_judged_with_hand_computed_verdicts():
    g = frame(
        BOW, MAJ,
        row("slow-close", 0.70, 0.66, 0.74, latency=2.0),  # below; intervals overlap (0.74 >= 0.72); dominated
        row("fast-far", 0.60, 0.55, 0.65, latency=0.01),  # below; apart (0.65 < 0.72); faster than bow: not dominated
        row("better", 0.80, 0.76, 0.84, latency=2.0),  # above: not named
        row("tie-slow", 0.76, 0.72, 0.80, latency=1.0),  # as accurate, slower and bigger: dominated, not below
        row("tie-fast", 0.76, 0.72, 0.80, latency=0.01),  # as accurate but faster: neither
        row("collapsed", 0.50, 0.46, 0.54),  # no better than majority: the failed-training line only
    )
    verdicts = {v.label: v for v in judge(g)}
    assert set(verdicts) == {"slow-close", "fast-far", "better", "tie-slow", "tie-fast"}
    named = {v.label for v in verdicts.values() if v.named}
    assert named == {"slow-close", "fast-far", "tie-slow"}
    assert (verdicts["slow-close"].below, verdicts["slow-close"].overlap, verdicts["slow-close"].dominated) == (True, True, True)
    assert (verdicts["fast-far"].below, verdicts["fast-far"].overlap, verdicts["fast-far"].dominated) == (True, False, False)
    assert (verdicts["tie-slow"].below, verdicts["tie-slow"].dominated) == (False, True)
    assert not verdicts["tie-fast"].dominated and not verdicts["better"].below

    lines = floor_warnings(g, TITLE)
    assert len(lines) == 4  # three judged models + the collapsed one; the best (better, 80%) beats bow-linear: no summary line
    assert lines[0] == (
        "rt on cpu: tie-slow scores 76.0% [72.0, 80.0] test accuracy, no more than the bow-linear reference floor's "
        "76.0% [72.0, 80.0]. bow-linear dominates it on (accuracy, latency, size): at least as accurate, faster "
        "(0.02 vs 1.00 ms) and smaller (12.2 vs 976.6 KiB).")
    assert lines[1] == (
        "rt on cpu: slow-close scores 70.0% [66.0, 74.0] test accuracy, 6.0 percentage points of accuracy below the "
        "bow-linear reference floor's 76.0% [72.0, 80.0]; not distinguishable by intervals: their 95% Wilson intervals "
        "overlap (intervals, not a paired test such as an exact McNemar: the report's rows carry no per-sample outputs). "
        "bow-linear "
        "dominates it on (accuracy, latency, size): at least as accurate, faster (0.02 vs 2.00 ms) and smaller "
        "(12.2 vs 976.6 KiB).")
    assert "fast-far scores 60.0% [55.0, 65.0] test accuracy, 16.0 percentage points of accuracy below" in lines[2]
    assert "distinguishable by intervals: their 95% Wilson intervals do not overlap" in lines[2]
    assert "Not dominated: bow-linear is not faster (0.02 vs 0.01 ms) and smaller (12.2 vs 976.6 KiB)." in lines[2]
    assert lines[3].startswith("rt on cpu: collapsed scores 50.0% test accuracy, no better than the majority floor's 50.0%")
    assert not any("better scores" in w or "tie-fast" in w for w in lines)


def test_below_every_floor_keeps_the_summary_and_names_each_model():
    g = frame(BOW, MAJ, row("a", 0.72, 0.68, 0.76), row("b", 0.70, 0.66, 0.74))
    lines = floor_warnings(g, TITLE)
    assert lines[0].startswith("rt on cpu: the best neural model, a, scores 72.0% test accuracy, below the bow-linear")
    assert [w.split(" scores")[0] for w in lines[1:]] == ["rt on cpu: a", "rt on cpu: b"]


def test_several_seeds_are_judged_by_mean_plus_minus_std_and_a_missing_cost_is_said():
    g = frame(BOW, row("seeded", 0.70, 0.60, 0.73, seeds=3, latency=math.nan))
    summary, line = floor_warnings(g, TITLE)  # the only model is below: the summary line, then its own
    assert summary.startswith("rt on cpu: the best neural model, seeded,")
    assert "not distinguishable by intervals: the mean ± std over seeds and the 95% Wilson interval overlap" in line
    assert line.endswith("Dominance not judged: latency or size missing for seeded or bow-linear.")
    apart = frame(BOW, row("seeded", 0.70, 0.69, 0.71, seeds=3, latency=math.nan))
    assert "distinguishable by intervals: the mean ± std over seeds and the 95% Wilson interval do not overlap" in \
        floor_warnings(apart, TITLE)[1]


def test_a_missing_interval_is_not_called_distinguishable():
    _, line = floor_warnings(frame(BOW, row("no-ci", 0.70, math.nan, math.nan, latency=2.0)), TITLE)
    assert "is not judged: an interval is missing" in line and "by intervals" not in line


def test_regression_is_judged_in_pearson_r_without_mcnemar():
    g = frame({**BOW, "metric": "pearson_r"}, row("reg", 0.70, 0.66, 0.74, latency=2.0, metric="pearson_r"))
    lines = floor_warnings(g, TITLE)
    assert ("reg scores 0.700 [0.660, 0.740] test Pearson r, 6.0 hundredths of Pearson r below the bow-linear reference "
            "floor's 0.760 [0.720, 0.800]") in lines[1]
    assert "95% Fisher-z intervals overlap" in lines[1] and "(intervals, not a paired test: the report" in lines[1] and "McNemar" not in lines[1]
    assert "dominates it on (Pearson r, latency, size): at least as high a Pearson r" in lines[1]


def test_no_bow_linear_no_verdict():
    assert judge(frame(MAJ, row("a", 0.70, 0.66, 0.74))) == []
    assert judge(frame({**BOW, "accuracy": math.nan}, row("a", 0.70, 0.66, 0.74))) == []


# -- the floors as points on the Pareto figures --------------------------------------------
@pytest.fixture
def figure_of(monkeypatch):
    """pareto_plot's figure instead of its PNG."""
    import matplotlib.pyplot as plt

    import beexbench.report.plots as plots

    figs = []
    monkeypatch.setattr(plots, "to_data_uri", lambda fig: figs.append(fig) or "uri")
    yield figs
    for f in figs:
        plt.close(f)


def _floor_collections(ax) -> dict:
    return {c.get_label(): c for c in ax.collections if "reference floor" in c.get_label()}


def test_pareto_figures_draw_the_floors_as_labelled_points_with_their_own_markers(figure_of):
    from matplotlib.markers import MarkerStyle

    from beexbench.report.plots import pareto_plot

    models = frame(row("a", 0.70, 0.66, 0.74, latency=2.0), row("b", 0.80, 0.76, 0.84, latency=4.0))
    floors = frame(BOW, MAJ)
    pareto_plot(models, "latency_ms", "latency", "t", log_x=True, floors=[("majority", 50.0), ("bow-linear", 76.0)],
                floor_rows=floors)
    ax = figure_of[0].axes[0]
    points = _floor_collections(ax)
    assert set(points) == {"bow-linear — reference floor (point: its own cost)", "majority — reference floor (point: its own cost)"}
    bow = points["bow-linear — reference floor (point: its own cost)"]
    assert bow.get_offsets().tolist() == [[0.02, 76.0]]
    assert points["majority — reference floor (point: its own cost)"].get_offsets().tolist() == [[0.01, 50.0]]
    shape = lambda c: c.get_paths()[0].vertices.round(6).tolist()  # noqa: E731
    marker = lambda m: (MarkerStyle(m).get_path().transformed(MarkerStyle(m).get_transform()).vertices.round(6).tolist())  # noqa: E731
    assert shape(bow) == marker("*") and shape(points["majority — reference floor (point: its own cost)"]) == marker("p")
    assert all(shape(c) != marker("*") for c in ax.collections if "reference floor" not in c.get_label())  # no model is a star
    texts = {t.get_text() for t in ax.texts}
    assert {"bow-linear", "majority"} <= texts  # named beside the points (and at the lines' ends)
    assert ax.get_xscale() == "log"  # 0.01 .. 4 ms spans more than 20x once the floors are in
    assert [line.get_ydata()[0] for line in ax.get_lines() if "reference floor" in line.get_label()] == [50.0, 76.0]


def test_a_zero_cost_floor_on_a_log_axis_is_marked_off_the_axis(figure_of):
    from beexbench.report.plots import pareto_plot

    models = frame({**row("a", 0.70, 0.66, 0.74), "ops": 1e6}, {**row("b", 0.80, 0.76, 0.84), "ops": 1e8})
    floors = frame({**BOW, "ops": 80.0}, {**MAJ, "ops": 0.0})
    pareto_plot(models, "ops", "ops", "t", scale=1e-6, log_x=True, floors=[("majority", 50.0), ("bow-linear", 76.0)],
                floor_rows=floors)
    ax = figure_of[0].axes[0]
    assert ax.get_xscale() == "log"
    points = _floor_collections(ax)
    assert "majority — reference floor (cost 0: off the log axis)" in points
    assert points["bow-linear — reference floor (point: its own cost)"].get_offsets().tolist() == [[pytest.approx(8e-5), 76.0]]
