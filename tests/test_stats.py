"""beexbench.stats against hand-computed cases (issue 29)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from beexbench.stats import adjust, mcnemar, paired_ratio, seed_difference


def test_mcnemar_exact_hand_computed():
    # 10 discordant pairs, 9 favour b: two-sided exact p = 2 * P(X <= 1 | Bin(10, 1/2)) = 2 * 11 / 1024
    a = [True] * 20 + [True] * 1 + [False] * 9 + [False] * 5
    b = [True] * 20 + [False] * 1 + [True] * 9 + [False] * 5
    r = mcnemar(a, b)
    assert (r.n, r.only_a, r.only_b) == (35, 1, 9)
    assert r.p_value == pytest.approx(22 / 1024)
    assert r.delta == pytest.approx(8 / 35)
    assert r.delta_lo < r.delta < r.delta_hi
    assert r.distinguishable()


def test_mcnemar_no_discordant_pairs_is_not_distinguishable():
    r = mcnemar([True, False, True], [True, False, True])
    assert r.p_value == 1.0 and r.delta == 0.0 and not r.distinguishable()


def test_mcnemar_symmetric_discordance():
    # 3 vs 3 discordant: p = 1 (the binomial is symmetric around the observed split)
    r = mcnemar([1, 1, 1, 0, 0, 0], [0, 0, 0, 1, 1, 1])
    assert r.p_value == pytest.approx(1.0) and r.delta == 0.0


def test_mcnemar_refuses_unpaired():
    with pytest.raises(ValueError, match="one length"):
        mcnemar([True, False], [True])


def test_holm_hand_computed():
    # sorted 0.01, 0.03, 0.04 -> 3 * 0.01, 2 * 0.03, max(1 * 0.04, 0.06) in input order
    assert adjust([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert adjust([0.5, 0.9], "holm") == pytest.approx([1.0, 1.0])


def test_benjamini_hochberg_hand_computed():
    # BH: p_(i) * m / i, then the running minimum from the largest down
    assert adjust([0.01, 0.04, 0.03], "bh") == pytest.approx([0.03, 0.04, 0.04])


def test_adjust_refuses_bad_input():
    with pytest.raises(ValueError):
        adjust([0.1, 1.5])
    with pytest.raises(ValueError, match="unknown correction"):
        adjust([0.1], "bonferroni-ish")


def test_paired_ratio_exact_double():
    a = np.linspace(1.0, 2.0, 50)
    r = paired_ratio(a, 2 * a, resamples=500)
    assert r.ratio == pytest.approx(2.0) and r.lo == pytest.approx(2.0) and r.hi == pytest.approx(2.0)
    assert r.p_value == pytest.approx(2 / 500) and r.distinguishable()


def test_paired_ratio_same_distribution_not_distinguishable():
    rng = np.random.default_rng(1)
    base = rng.lognormal(0.0, 0.3, 400)
    noise_a, noise_b = rng.normal(1, 0.02, 400), rng.normal(1, 0.02, 400)
    r = paired_ratio(base * noise_a, base * noise_b)
    assert r.lo < 1.0 < r.hi and not r.distinguishable()


def test_paired_ratio_pairing_matters():
    # the inputs vary 10x, b is 3% slower on each: only a paired resampling sees it
    rng = np.random.default_rng(2)
    base = rng.uniform(1.0, 10.0, 300)
    r = paired_ratio(base, base * 1.03 * rng.normal(1, 0.005, 300), statistic="mean")
    assert r.lo > 1.0 and r.ratio == pytest.approx(1.03, abs=0.005)


def test_seed_difference_hand_computed():
    # differences 0.03, 0.02, 0.04: mean 0.03, sd 0.01, t = 0.03 / (0.01 / sqrt 3) with 2 df;
    # for 2 df the two-sided p is 1 - |t| / sqrt(t^2 + 2)
    r = seed_difference([0.70, 0.72, 0.74], [0.73, 0.74, 0.78])
    t = 0.03 / (0.01 / math.sqrt(3))
    assert r.mean == pytest.approx(0.03)
    assert r.p_value == pytest.approx(1 - t / math.sqrt(t * t + 2), rel=1e-6)
    assert r.hi - r.mean == pytest.approx(4.302652729911275 * 0.01 / math.sqrt(3), rel=1e-6)


def test_one_seed_has_no_interval():
    r = seed_difference([0.7], [0.8])
    assert math.isnan(r.lo) and r.p_value == 1.0 and not r.distinguishable()
