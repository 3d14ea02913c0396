"""Statistics for pass rates: bootstrap and Wilson intervals, paired comparisons, MDE.

Pure functions over pass/fail outcomes; no I/O. Every function handles ``n == 0``, all-pass
and all-fail inputs with a defined result (never NaN, never an exception).

Choices, documented once here:

* **Bootstrap.** Outcomes are binary, so resampling ``n`` outcomes with replacement and taking
  the mean is *exactly* a ``Binomial(n, p_hat) / n`` draw; for paired outcomes the per-pair
  difference takes the values -1, 0, +1 and a resample is exactly a
  ``Multinomial(n, (p_-, p_0, p_+))`` draw. We draw those directly (vectorised, O(resamples)
  memory whatever ``n``), which gives the same distribution as index resampling. Intervals are
  percentile intervals. When every outcome is equal the bootstrap collapses to a point
  (``[100%, 100%]`` from 10 passes), which claims a certainty 10 tasks cannot give: there
  ``ci`` is the Wilson interval instead (``method`` says which). Paired, the bootstrap
  collapses when every pair agrees or every pair favours one side; ``ci`` then bounds the
  difference by the Wilson interval of the discordant share (``|B - A|`` is at most it):
  ``[-u, +u]`` with ``u`` the upper bound for 0 discordant pairs of ``n``.
* **p-value.** The exact McNemar test: under H0 each discordant pair is equally likely to
  favour either condition, so the number favouring B is ``Binomial(b + c, 1/2)``; the
  two-sided p-value is ``min(1, 2 * P(X <= min(b, c)))``. For binary outcomes this *is* the
  exact paired permutation (sign-flip) test, so only one p-value is reported.
* **MDE.** Connor's (1987) sample-size formula for McNemar's test, solved for the effect:
  the smallest ``d = |p_B - p_A|`` with
  ``n * d**2 >= (z_{1-alpha/2} * sqrt(psi) + z_{power} * sqrt(psi - d**2))**2``,
  where ``psi`` is the discordant-pair rate. A difference ``d`` needs at least ``d`` of the
  pairs to be discordant, so ``psi`` is taken as ``max(psi, d)``. Without paired data we
  assume ``psi = 0.5``: two independent conditions near a 50% pass rate disagree on half the
  tasks, the worst case for independent outcomes (``2 p (1 - p) <= 0.5``); positively
  correlated conditions (the usual case: hard tasks are hard for both) disagree less, so the
  real MDE is smaller. With fewer than 4 pairs nothing is detectable and the MDE is ``None``.
  These are normal approximations; the exact test is a little more conservative at small n.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from statistics import NormalDist

import numpy as np
from pydantic import BaseModel, Field

#: Default number of bootstrap resamples.
DEFAULT_RESAMPLES = 10_000
#: Discordant-pair rate assumed by the MDE when no paired data is available.
DEFAULT_DISCORDANT_RATE = 0.5
#: A paired difference is clear when its CI excludes 0 and the exact test's p is below this.
ALPHA = 0.05


class Interval(BaseModel):
    """A two-sided confidence interval."""

    low: float = Field(description="Lower bound.")
    high: float = Field(description="Upper bound.")
    confidence: float = Field(description="Coverage level, e.g. 0.95.")
    method: str = Field(description="How it was computed: 'bootstrap-percentile' or 'wilson'.")


class PassRate(BaseModel):
    """The pass rate of one condition, with a bootstrap and a Wilson interval."""

    n: int = Field(description="Number of outcomes.")
    passed: int = Field(description="Number of passing outcomes.")
    rate: float | None = Field(description="passed / n; None when n == 0.")
    ci: Interval = Field(
        description="Bootstrap percentile interval ([0, 1] when n == 0; Wilson when every "
        "outcome is the same, where the bootstrap is a point)."
    )
    wilson: Interval = Field(description="Wilson score interval ([0, 1] when n == 0).")
    resamples: int = Field(description="Bootstrap resamples drawn.")
    seed: int = Field(description="Seed of the bootstrap generator.")


class PairedComparison(BaseModel):
    """Condition B against condition A on the same (task, seed) pairs; difference is B - A."""

    n: int = Field(description="Number of pairs.")
    both_pass: int = Field(description="Pairs both conditions passed.")
    only_a: int = Field(description="Discordant pairs only A passed (b in McNemar's table).")
    only_b: int = Field(description="Discordant pairs only B passed (c in McNemar's table).")
    both_fail: int = Field(description="Pairs both conditions failed.")
    rate_a: float | None = Field(description="Pass rate of A; None when n == 0.")
    rate_b: float | None = Field(description="Pass rate of B; None when n == 0.")
    difference: float | None = Field(description="rate_b - rate_a; None when n == 0.")
    ci: Interval = Field(
        description="Paired bootstrap interval of the difference (Wilson-bounded when every "
        "pair is of one kind, where the bootstrap is a point)."
    )
    p_value: float = Field(description="Two-sided exact McNemar p-value (1.0 with no discordance).")
    test: str = Field(default="mcnemar-exact", description="The test behind p_value.")
    mde: float | None = Field(
        description="Minimum detectable effect at this n with the observed discordant rate "
        "(alpha 0.05 two-sided, power 0.8); None when no effect is detectable."
    )
    mde_conservative: float | None = Field(
        description="The MDE at this n assuming a discordant rate of 0.5."
    )
    resamples: int = Field(description="Bootstrap resamples drawn.")
    seed: int = Field(description="Seed of the bootstrap generator.")


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")


def _check_resamples(resamples: int) -> None:
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")


def _percentile_interval(samples: np.ndarray, confidence: float) -> Interval:
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(samples, [tail, 1.0 - tail])
    return Interval(
        low=float(low), high=float(high), confidence=confidence, method="bootstrap-percentile"
    )


def _degenerate_paired_interval(only_a: int, only_b: int, n: int, confidence: float) -> Interval:
    """Where every pair is of one kind: ``|B - A|`` is at most the discordant share, so the
    Wilson interval of that share bounds the difference (module docstring)."""
    if only_b == n:
        low, high = wilson_interval(n, n, confidence).low, 1.0
    elif only_a == n:
        low, high = -1.0, -wilson_interval(n, n, confidence).low
    else:  # every pair agrees
        high = wilson_interval(0, n, confidence).high
        low = -high
    return Interval(low=low, high=high, confidence=confidence, method="wilson")


def wilson_interval(passed: int, n: int, confidence: float = 0.95) -> Interval:
    """The Wilson score interval for ``passed`` successes out of ``n``; ``[0, 1]`` when n == 0."""
    _check_confidence(confidence)
    if not 0 <= passed <= n:
        raise ValueError(f"need 0 <= passed <= n, got passed={passed}, n={n}")
    if n == 0:
        return Interval(low=0.0, high=1.0, confidence=confidence, method="wilson")
    z = NormalDist().inv_cdf(1.0 - (1.0 - confidence) / 2.0)
    p = passed / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # Clamp rounding noise: at p = 0 or 1 one bound is exactly 0 or 1.
    low = 0.0 if passed == 0 else max(0.0, centre - half)
    high = 1.0 if passed == n else min(1.0, centre + half)
    return Interval(low=low, high=high, confidence=confidence, method="wilson")


def pass_rate(
    outcomes: Sequence[bool],
    *,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    confidence: float = 0.95,
) -> PassRate:
    """Pass rate of ``outcomes`` with a seeded bootstrap percentile CI and a Wilson CI.

    The same outcomes, resamples and seed always give the same interval.
    """
    _check_confidence(confidence)
    _check_resamples(resamples)
    n = len(outcomes)
    passed = sum(1 for o in outcomes if o)
    wilson = wilson_interval(passed, n, confidence)
    if n == 0:
        full = Interval(low=0.0, high=1.0, confidence=confidence, method="bootstrap-percentile")
        return PassRate(
            n=0, passed=0, rate=None, ci=full, wilson=wilson, resamples=resamples, seed=seed
        )
    rng = np.random.default_rng(seed)
    means = rng.binomial(n, passed / n, size=resamples) / n
    # All passed or all failed: the bootstrap is a point; Wilson is not (module docstring).
    degenerate = passed in (0, n)
    return PassRate(
        n=n,
        passed=passed,
        rate=passed / n,
        ci=wilson if degenerate else _percentile_interval(means, confidence),
        wilson=wilson,
        resamples=resamples,
        seed=seed,
    )


def bootstrap_seed(seeds: Iterable[int]) -> int:
    """The bootstrap seed of a set of outcomes: their one run seed, else 0.

    An evaluation's summary, ``compare`` and ``evolve`` draw the bootstrap with the run's own
    seed, so a view that recomputes a CI from the same outcomes (the index, the app) must use
    it too: with seed 0 instead, a seed-3 run of 8 tasks, 3 passed, read [12.5%, 75%] in the
    app and [0%, 75%] in its summary. Outcomes of several seeds have no file to agree with: 0.
    """
    distinct = set(seeds)
    return next(iter(distinct)) if len(distinct) == 1 else 0


def clear_direction(ci_low: float, ci_high: float, p_value: float) -> int:
    """+1 (clearly above 0), -1 (clearly below) or 0 for a paired difference: its CI must
    exclude 0 *and* the exact test agree (p < :data:`ALPHA`). At small n a percentile CI can
    exclude 0 where the exact test cannot tell (3 of 4 tasks gained: CI [+0.25, +1], p 0.25).
    """
    if p_value >= ALPHA:
        return 0
    return 1 if ci_low > 0 else -1 if ci_high < 0 else 0


def mcnemar_exact_p(only_a: int, only_b: int) -> float:
    """Two-sided exact McNemar p-value for the discordant counts ``only_a`` and ``only_b``.

    ``min(1, 2 * P(X <= min(b, c)))`` with ``X ~ Binomial(b + c, 1/2)``; 1.0 when there are no
    discordant pairs. Computed with exact integers, so it is exact for any count.
    """
    if only_a < 0 or only_b < 0:
        raise ValueError(f"counts must be >= 0, got {only_a}, {only_b}")
    total = only_a + only_b
    if total == 0:
        return 1.0
    # C(m, i+1) = C(m, i) * (m - i) / (i + 1): one big-int step per term, not a comb each.
    term = tail = 1
    for i in range(min(only_a, only_b)):
        term = term * (total - i) // (i + 1)
        tail += term
    # Integer division of big ints to a float is correctly rounded in Python.
    return min(1.0, 2 * tail / 2**total)


def minimum_detectable_effect(
    n: int,
    *,
    discordant_rate: float = DEFAULT_DISCORDANT_RATE,
    alpha: float = 0.05,
    power: float = 0.8,
) -> float | None:
    """Smallest paired difference in pass rate detectable with ``n`` pairs (McNemar, Connor).

    The smallest ``d`` in ``(0, 1]`` with
    ``n d^2 >= (z_{1-alpha/2} sqrt(psi) + z_power sqrt(psi - d^2))^2`` where
    ``psi = max(discordant_rate, d)``. Returns None when nothing is detectable (``n < 4``
    at the defaults). Never increases as ``n`` grows.
    """
    if not 0.0 <= discordant_rate <= 1.0:
        raise ValueError(f"discordant_rate must be in [0, 1], got {discordant_rate}")
    if not 0.0 < alpha < 1.0 or not 0.0 < power < 1.0:
        raise ValueError("alpha and power must be in (0, 1)")
    if n <= 0:
        return None
    z_alpha = NormalDist().inv_cdf(1.0 - alpha / 2.0)
    z_power = NormalDist().inv_cdf(power)

    def detectable(d: float) -> bool:
        psi = max(discordant_rate, d)
        right = z_alpha * math.sqrt(psi) + z_power * math.sqrt(max(psi - d * d, 0.0))
        return n * d * d >= right * right

    # The condition need not be monotone in d once psi follows d, so scan a grid for the
    # first detectable d, then refine between it and the grid point below by bisection.
    steps = 2000
    previous = 0.0
    for i in range(1, steps + 1):
        d = i / steps
        if detectable(d):
            low, high = previous, d
            for _ in range(60):
                mid = (low + high) / 2.0
                if detectable(mid):
                    high = mid
                else:
                    low = mid
            return high
        previous = d
    return None


def paired_comparison(
    a: Sequence[bool],
    b: Sequence[bool],
    *,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    confidence: float = 0.95,
) -> PairedComparison:
    """Compare B with A on the same units (``a[i]`` and ``b[i]`` are one task and seed).

    Reports B - A with a paired bootstrap percentile CI (pairs resampled together), the exact
    McNemar p-value, the discordant counts and the MDE at this n.

    Raises:
        ValueError: when ``a`` and ``b`` differ in length.
    """
    _check_confidence(confidence)
    _check_resamples(resamples)
    if len(a) != len(b):
        raise ValueError(f"paired outcomes differ in length: {len(a)} vs {len(b)}")
    n = len(a)
    both_pass = sum(1 for x, y in zip(a, b, strict=True) if x and y)
    only_a = sum(1 for x, y in zip(a, b, strict=True) if x and not y)
    only_b = sum(1 for x, y in zip(a, b, strict=True) if y and not x)
    both_fail = n - both_pass - only_a - only_b
    p_value = mcnemar_exact_p(only_a, only_b)
    conservative = minimum_detectable_effect(n)
    if n == 0:
        full = Interval(low=-1.0, high=1.0, confidence=confidence, method="bootstrap-percentile")
        return PairedComparison(
            n=0,
            both_pass=0,
            only_a=0,
            only_b=0,
            both_fail=0,
            rate_a=None,
            rate_b=None,
            difference=None,
            ci=full,
            p_value=p_value,
            mde=None,
            mde_conservative=None,
            resamples=resamples,
            seed=seed,
        )
    rng = np.random.default_rng(seed)
    # Per-pair difference b - a is -1 (only A), 0 (concordant) or +1 (only B).
    probs = [only_a / n, (both_pass + both_fail) / n, only_b / n]
    counts = rng.multinomial(n, probs, size=resamples)
    diffs = (counts[:, 2] - counts[:, 0]) / n
    ci = _percentile_interval(diffs, confidence)
    if max(probs) == 1.0:  # one kind of pair only: the bootstrap is a point
        ci = _degenerate_paired_interval(only_a, only_b, n, confidence)
    return PairedComparison(
        n=n,
        both_pass=both_pass,
        only_a=only_a,
        only_b=only_b,
        both_fail=both_fail,
        rate_a=(both_pass + only_a) / n,
        rate_b=(both_pass + only_b) / n,
        difference=(only_b - only_a) / n,
        ci=ci,
        p_value=p_value,
        mde=minimum_detectable_effect(n, discordant_rate=(only_a + only_b) / n),
        mde_conservative=conservative,
        resamples=resamples,
        seed=seed,
    )
