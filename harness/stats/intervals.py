"""Statistics over seeds: intervals, paired tests against a baseline, Holm, selection rules,
and the seeds a paired t-test would need to decide a difference.

The paper's differences between rows (a few tenths of a point of accuracy, a dB of PSNR)
are the size of seed-to-seed spread, so every number a report draws from several seeds
goes through here: Student-t 95% intervals of the mean, paired differences over the seeds
two rows share (seed s gives every row the same data order, augmentation and noise), a
paired t-test with Holm's adjustment across a table's rows, and the paper's own rule of
reporting the best of two runs.
"""

from __future__ import annotations

import math
import statistics
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

LEVEL = 0.95  # confidence of every interval
ALPHA = 0.05  # significance level of the marks in reports
POWER = 0.80  # power behind "seeds needed"
MAX_SEEDS = 1000  # above this, "seeds needed" says "more than"
SELECT_RULES = ("mean", "best-of-2", "median")

SeedValues = Mapping[int, float]  # one value per seed


@dataclass(frozen=True)
class Interval:
    """A mean over seeds with its sample std and Student-t 95% interval (NaN when n < 2)."""

    mean: float
    std: float
    low: float
    high: float
    n: int


def finite(values: SeedValues) -> dict[int, float]:
    """The seeds with a finite value, in seed order."""
    return {s: float(values[s]) for s in sorted(values) if math.isfinite(values[s])}


def finite_array(values: Sequence[float]) -> np.ndarray:
    """The finite ones of ``values``, in order."""
    return np.asarray([v for v in values if math.isfinite(v)], dtype=float)


def interval(values: Sequence[float]) -> Interval:
    """Mean, sample std and Student-t 95% interval of the mean of ``values``."""
    x = finite_array(values)
    n = len(x)
    if n == 0:
        return Interval(math.nan, math.nan, math.nan, math.nan, 0)
    mean = float(x.mean())
    if n == 1:
        return Interval(mean, math.nan, math.nan, math.nan, 1)
    std = float(x.std(ddof=1))
    if std == 0:  # identical values: scipy would give NaN bounds
        return Interval(mean, 0.0, mean, mean, n)
    from scipy import stats  # seconds to import: not at the CLI's start

    low, high = stats.t.interval(LEVEL, n - 1, loc=mean, scale=std / math.sqrt(n))
    return Interval(mean, std, float(low), float(high), n)


@dataclass(frozen=True)
class Paired:
    """A row against the baseline over the seeds both have."""

    delta: Interval  # of row minus baseline, seed by seed
    p: float  # two-sided paired t-test, not yet adjusted (NaN when n < 2)
    win_rate: float  # share of the shared seeds on which the row is better


def paired(row: SeedValues, base: SeedValues, higher_is_better: bool = True) -> Paired:
    """Paired difference ``row - base`` over shared seeds and its t-test (scipy.stats.ttest_rel)."""
    a, b = finite(row), finite(base)
    shared = [s for s in a if s in b]
    x = np.array([a[s] for s in shared])
    y = np.array([b[s] for s in shared])
    delta = interval(list(x - y))
    p = math.nan
    if len(shared) >= 2:
        with warnings.catch_warnings():  # identical differences: scipy warns, p is 0 or NaN
            warnings.simplefilter("ignore", RuntimeWarning)
            from scipy import stats  # seconds to import: not at the CLI's start

            p = float(stats.ttest_rel(x, y).pvalue)
    wins = (x > y) if higher_is_better else (x < y)
    return Paired(delta, p, float(wins.mean()) if len(shared) else math.nan)


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (step-down, monotone, capped at 1).

    NaN entries (tests that could not be run) are not part of the family and stay NaN.
    """
    tested = sorted((p, i) for i, p in enumerate(pvalues) if not math.isnan(p))
    m = len(tested)
    adjusted = [math.nan] * len(pvalues)
    running = 0.0
    for rank, (p, i) in enumerate(tested):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[i] = running
    return adjusted


def select(values: SeedValues, rule: str, higher_is_better: bool | None) -> float:
    """One number for a row under a selection rule.

    ``mean`` and ``median`` over all seeds; ``best-of-2`` the better of the first two seeds
    (the paper's "best results in two tests"). Columns with no better direction
    (``higher_is_better`` None) take the mean under every rule.
    """
    if rule not in SELECT_RULES:
        raise ValueError(f"unknown selection rule {rule!r}; choose one of {SELECT_RULES}")
    x = list(finite(values).values())
    if not x:
        return math.nan
    if rule == "median" and higher_is_better is not None:
        return float(statistics.median(x))
    if rule == "best-of-2" and higher_is_better is not None:
        return max(x[:2]) if higher_is_better else min(x[:2])
    return float(np.mean(x))


def best_of_2_gain(values: SeedValues, higher_is_better: bool) -> float:
    """How much the best of the first two seeds adds to the mean of all seeds (signed so that
    a gain is positive); NaN with fewer than 2 seeds."""
    if len(finite(values)) < 2:
        return math.nan
    gain = select(values, "best-of-2", higher_is_better) - select(values, "mean", None)
    return gain if higher_is_better else -gain


def paired_t_power(effect: float, n: int, alpha: float = ALPHA) -> float:
    """Power of a two-sided paired t-test of ``n`` pairs at effect size d_z (noncentral t
    with n - 1 degrees of freedom and noncentrality d_z sqrt(n))."""
    from scipy import stats  # seconds to import: not at the CLI's start

    df, nc = n - 1, effect * math.sqrt(n)
    crit = stats.t.ppf(1 - alpha / 2, df)
    # the lower tail as the upper tail of -nc: scipy's nct.cdf gives NaN far out in the tail
    return float(stats.nct.sf(crit, df, nc) + stats.nct.sf(crit, df, -nc))


def seeds_needed(differences: Sequence[float], target: float = 0.0, alpha: float = ALPHA) -> float:
    """The fewest seeds (pairs) with which a two-sided paired t-test at ``alpha`` tells the
    observed mean difference from ``target`` with ``POWER``, taking the observed mean and
    sd as the truth. NaN when it cannot be said (below 2 values, or no difference from
    ``target``); infinity above ``MAX_SEEDS``."""
    d = finite_array(differences)
    if len(d) < 2:
        return math.nan
    gap, sd = abs(float(d.mean()) - target), float(d.std(ddof=1))
    if gap == 0:
        return math.nan
    if sd == 0:
        return 2.0
    effect = gap / sd
    hi = 2  # doubling first: at large n and effect scipy's noncentral t gives NaN
    while paired_t_power(effect, hi, alpha) < POWER:
        if hi >= MAX_SEEDS:
            return math.inf
        hi = min(2 * hi, MAX_SEEDS)
    lo = max(2, hi // 2)
    while lo < hi:  # power grows with n: the smallest n that reaches POWER
        mid = (lo + hi) // 2
        if paired_t_power(effect, mid, alpha) >= POWER:
            hi = mid
        else:
            lo = mid + 1
    return float(lo)


def seeds_text(needed: float) -> str:
    """What ``seeds_needed`` said, as a clause: ``about 9 seeds would decide it``."""
    if math.isnan(needed):
        return "no number of seeds would decide it (the observed difference sits on the threshold)"
    if math.isinf(needed):
        return f"more than {MAX_SEEDS} seeds would be needed to decide it"
    return f"about {needed:.0f} seeds would decide it"


__all__ = [
    "ALPHA",
    "LEVEL",
    "MAX_SEEDS",
    "POWER",
    "SELECT_RULES",
    "Interval",
    "Paired",
    "best_of_2_gain",
    "finite",
    "finite_array",
    "holm",
    "interval",
    "paired",
    "paired_t_power",
    "seeds_needed",
    "seeds_text",
    "select",
]
