import math
from statistics import NormalDist

import numpy as np
import pytest

from toolkit.stats import (
    mcnemar_exact_p,
    minimum_detectable_effect,
    paired_comparison,
    pass_rate,
    wilson_interval,
)

# Newcombe (1998), "Two-sided confidence intervals for the single proportion", Table I,
# method 3 (Wilson score interval without continuity correction).
NEWCOMBE = [
    (81, 263, 0.2553, 0.3662),
    (15, 148, 0.0624, 0.1605),
    (0, 20, 0.0000, 0.1611),
    (1, 29, 0.0061, 0.1718),
]


@pytest.mark.parametrize(("passed", "n", "low", "high"), NEWCOMBE)
def test_wilson_matches_newcombe_table(passed, n, low, high):
    interval = wilson_interval(passed, n)
    assert round(interval.low, 4) == low
    assert round(interval.high, 4) == high
    assert interval.method == "wilson"


def test_wilson_edges():
    assert (wilson_interval(0, 0).low, wilson_interval(0, 0).high) == (0.0, 1.0)
    all_pass = wilson_interval(10, 10)
    assert all_pass.high == 1.0 and 0.6 < all_pass.low < 0.75
    with pytest.raises(ValueError):
        wilson_interval(3, 2)


# Exact binomial tails computed by hand: P(X <= k) for X ~ Bin(m, 1/2), doubled.
@pytest.mark.parametrize(
    ("only_a", "only_b", "expected"),
    [
        (1, 9, 2 * (1 + 10) / 1024),  # 0.021484375
        (9, 1, 2 * (1 + 10) / 1024),  # symmetric
        (0, 5, 2 * 1 / 32),  # 0.0625: five pairs can never reach 0.05
        (0, 6, 2 * 1 / 64),  # 0.03125
        (2, 8, 2 * (1 + 10 + 45) / 1024),  # 0.109375
        (3, 3, 1.0),  # tail 42/64 doubled exceeds 1: capped
        (0, 0, 1.0),  # no discordant pairs
    ],
)
def test_mcnemar_exact_known_values(only_a, only_b, expected):
    assert mcnemar_exact_p(only_a, only_b) == pytest.approx(expected, abs=1e-15)


def test_mcnemar_exact_large_counts_are_finite():
    p = mcnemar_exact_p(2000, 2300)
    assert 0.0 < p < 0.001
    assert mcnemar_exact_p(5000, 5000) == 1.0


def test_pass_rate_basic_and_seeded():
    outcomes = [True] * 31 + [False] * 19
    first = pass_rate(outcomes, seed=7)
    again = pass_rate(outcomes, seed=7)
    assert first == again
    assert first.n == 50 and first.passed == 31 and first.rate == pytest.approx(0.62)
    assert first.ci.low < 0.62 < first.ci.high
    # A binomial with n=50, p=0.62 has sd ~0.069: the 95% interval is about +-0.13.
    assert 0.10 < 0.62 - first.ci.low < 0.17
    assert 0.10 < first.ci.high - 0.62 < 0.17
    assert first.resamples == 10_000


@pytest.mark.parametrize("outcomes", [[], [True] * 8, [False] * 8])
def test_pass_rate_edges_are_defined(outcomes):
    result = pass_rate(outcomes, resamples=500)
    values = [result.ci.low, result.ci.high, result.wilson.low, result.wilson.high]
    assert all(math.isfinite(v) and 0.0 <= v <= 1.0 for v in values)
    if not outcomes:
        assert result.rate is None and (result.ci.low, result.ci.high) == (0.0, 1.0)
    elif outcomes[0]:
        # The bootstrap collapses to [1, 1] here: the interval shown is Wilson's.
        assert result.rate == 1.0 and result.ci == result.wilson and result.ci.low < 1.0
        assert result.ci.method == "wilson" and result.ci.high == 1.0
    else:
        assert result.rate == 0.0 and result.ci == result.wilson and result.ci.high > 0.0


def test_bootstrap_ci_covers_true_rate_about_95_percent():
    rng = np.random.default_rng(12345)
    true_rate, n, trials = 0.6, 60, 300
    covered = 0
    for trial in range(trials):
        outcomes = list(rng.random(n) < true_rate)
        ci = pass_rate(outcomes, resamples=2000, seed=trial).ci
        covered += ci.low <= true_rate <= ci.high
    assert 0.88 <= covered / trials <= 0.99


def test_bootstrap_matches_index_resampling():
    # The binomial/multinomial draws must give the distribution of explicit index resampling.
    rng = np.random.default_rng(3)
    a = rng.random(40) < 0.5
    b = rng.random(40) < 0.7
    idx = rng.integers(0, 40, size=(20_000, 40))
    explicit = np.quantile(b[idx].mean(axis=1) - a[idx].mean(axis=1), [0.025, 0.975])
    ours = paired_comparison(list(a), list(b), resamples=20_000, seed=1).ci
    assert ours.low == pytest.approx(explicit[0], abs=0.026)
    assert ours.high == pytest.approx(explicit[1], abs=0.026)
    explicit_single = np.quantile(a[idx].mean(axis=1), [0.025, 0.975])
    single = pass_rate(list(a), resamples=20_000, seed=1).ci
    assert single.low == pytest.approx(explicit_single[0], abs=0.026)
    assert single.high == pytest.approx(explicit_single[1], abs=0.026)


def test_mde_monotone_in_n_and_solves_connor_formula():
    values = [minimum_detectable_effect(n) for n in range(4, 400)]
    assert all(v is not None for v in values)
    assert all(later <= earlier + 1e-12 for earlier, later in zip(values, values[1:], strict=False))
    z_a, z_b = NormalDist().inv_cdf(0.975), NormalDist().inv_cdf(0.8)
    d = minimum_detectable_effect(50)
    # At psi = 0.5 the solution satisfies n d^2 = (z_a sqrt(psi) + z_b sqrt(psi - d^2))^2.
    right = (z_a * math.sqrt(0.5) + z_b * math.sqrt(0.5 - d * d)) ** 2
    assert 50 * d * d == pytest.approx(right, rel=1e-6)
    assert 0.25 < d < 0.30


def test_mde_edges_and_discordance():
    assert minimum_detectable_effect(0) is None
    assert minimum_detectable_effect(3) is None
    # Fewer discordant pairs means less noise: a smaller detectable effect.
    assert minimum_detectable_effect(100, discordant_rate=0.1) < minimum_detectable_effect(100)
    # Rough check against the unpaired normal approximation at p = 0.5.
    assert minimum_detectable_effect(200) == pytest.approx(2.8 * math.sqrt(0.5 / 200), rel=0.05)
    with pytest.raises(ValueError):
        minimum_detectable_effect(10, discordant_rate=1.5)


def test_paired_comparison_counts_difference_and_p():
    a = [True] * 20 + [False] * 30
    b = [True] * 20 + [True] * 9 + [False] * 21
    b[0] = False  # one pair only A passed
    result = paired_comparison(a, b, seed=0)
    assert (result.both_pass, result.only_a, result.only_b, result.both_fail) == (19, 1, 9, 21)
    assert result.rate_a == pytest.approx(0.4) and result.rate_b == pytest.approx(0.56)
    assert result.difference == pytest.approx(0.16)
    assert result.p_value == pytest.approx(0.021484375)
    assert result.ci.low > 0.0 and result.ci.low < 0.16 < result.ci.high
    assert result.mde is not None and result.mde < result.mde_conservative
    assert result.test == "mcnemar-exact"


def test_paired_comparison_edges():
    empty = paired_comparison([], [])
    assert empty.n == 0 and empty.difference is None and empty.p_value == 1.0
    assert (empty.ci.low, empty.ci.high) == (-1.0, 1.0)
    # Every pair agrees: not [0, 0] (the bootstrap's point) but |B - A| bounded by the Wilson
    # upper bound of 0 discordant pairs in 10.
    same = paired_comparison([True, False] * 5, [True, False] * 5, resamples=100)
    bound = wilson_interval(0, 10).high
    assert same.difference == 0.0 and (same.ci.low, same.ci.high) == (-bound, bound)
    assert same.p_value == 1.0 and same.ci.method == "wilson" and 0.2 < bound < 0.35
    fixed = paired_comparison([False] * 6, [True] * 6, resamples=100)  # every pair favours B
    assert fixed.difference == 1.0 and fixed.ci.high == 1.0
    assert fixed.ci.low == pytest.approx(wilson_interval(6, 6).low) and fixed.ci.low < 1.0
    mixed = paired_comparison([True, False, False, True], [True, True, False, False])
    assert mixed.ci.method == "bootstrap-percentile"  # not degenerate: the bootstrap stays
    with pytest.raises(ValueError, match="length"):
        paired_comparison([True], [True, False])


def test_bad_parameters_raise():
    with pytest.raises(ValueError):
        pass_rate([True], resamples=0)
    with pytest.raises(ValueError):
        pass_rate([True], confidence=1.5)
    with pytest.raises(ValueError):
        mcnemar_exact_p(-1, 2)
