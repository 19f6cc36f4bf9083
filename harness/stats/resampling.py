"""Statistics that hold at 2 to 10 seeds: resampling, probability of improvement, seeds needed.

A Student-t interval or test over 2 or 3 seeds leans on a normality nobody can check, so
each comparison of a row with the baseline also gets statistics that assume less
(Agarwal et al. 2021, "Deep RL at the edge of the statistical precipice", and its
``rliable`` library; Bouthillier et al. 2021):

* a BCa bootstrap interval of the mean paired difference (``scipy.stats.bootstrap``; the
  pairs are the seeds both rows share, so resampling the differences keeps the pairing);
* an exact sign-flip permutation p-value of that mean (``scipy.stats.permutation_test``,
  every one of the 2^n sign patterns enumerated while 2^n <= ``RESAMPLES``);
* the probability of improvement P(X > Y) as rliable defines it: the Mann-Whitney
  average of 1[x > y] + 1/2 1[x = y] over all pairs of runs, with a percentile interval
  from resampling each row's runs independently (rliable's ``StratifiedIndependentBootstrap``
  for one task);
* the paired effect size Cohen's d_z = mean(d) / sd(d);
* the seeds a paired t-test would need to resolve the observed difference with 80% power
  (:func:`harness.stats.intervals.seeds_needed`), so an inconclusive result says what
  would decide it.

Per row: the interquartile mean with rliable's stratified-bootstrap percentile interval
(from 5 seeds), and Dodge et al.'s (2019) expected maximum of n runs drawn from the
observed seeds, which says how much of the paper's best-of-2 number is selection.
Every resampling uses a fixed generator, so a report is the same each time it is made.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from harness.core.lazy import lazy
from harness.stats.intervals import LEVEL, finite_array, seeds_needed

if TYPE_CHECKING:
    from scipy import stats
else:
    stats = lazy("scipy.stats")  # seconds to import: not at the CLI's start

RESAMPLES = 9999  # bootstrap resamples; permutation tests are exact up to 2^13 sign patterns
MIN_BOOTSTRAP = 3  # with 2 values a bootstrap mean takes 3 values: no interval
MIN_IQM = 5  # rliable's interquartile mean needs runs to trim
BEST_OF = 2  # the paper's rule: the best of two runs
_SEED = 20260101  # the fixed generator of every resampling
# what a report's main cells show (`report --stats`): the interval beside each mean and the
# test behind the mark of a row that differs from the baseline
STATS = ("t", "bootstrap", "permutation")
DEFAULT_STATS = "t"


def _rng() -> np.random.Generator:
    return np.random.default_rng(_SEED)


def no_interval_reason(n: int) -> str:
    """Why a bootstrap interval cannot be given from ``n`` values (empty when it can)."""
    if n >= MIN_BOOTSTRAP:
        return ""
    if n == 0:
        return "no values"
    if n == 1:
        return "one seed has no spread to resample"
    return (
        f"{n} seeds: a bootstrap of {n} values takes too few distinct values to give an "
        f"interval (from {MIN_BOOTSTRAP} seeds)"
    )


def bca_interval(values: Sequence[float]) -> tuple[float, float]:
    """BCa bootstrap 95% interval of the mean (NaN below ``MIN_BOOTSTRAP`` values; a point
    when every value is the same, where the bootstrap has nothing to resample)."""
    x = finite_array(values)
    if len(x) < MIN_BOOTSTRAP:
        return math.nan, math.nan
    if np.ptp(x) == 0:
        return float(x[0]), float(x[0])
    with warnings.catch_warnings():  # few distinct values: scipy warns, the interval stands
        warnings.simplefilter("ignore")
        ci = stats.bootstrap(
            (x,), np.mean, confidence_level=LEVEL, n_resamples=RESAMPLES, method="BCa",
            rng=_rng(),
        ).confidence_interval  # fmt: skip
    return float(ci.low), float(ci.high)


def sign_flip_p(differences: Sequence[float]) -> float:
    """Two-sided p-value of the mean paired difference against 0 by flipping signs of the
    differences: exact (all 2^n patterns) while 2^n <= ``RESAMPLES``; NaN below 2 values.
    Its smallest possible value is 2 / 2^n (0.5 at 2 seeds, 0.25 at 3)."""
    d = finite_array(differences)
    if len(d) < 2:
        return math.nan
    result = stats.permutation_test(
        (d,), lambda x, axis: np.mean(x, axis=axis), permutation_type="samples",
        n_resamples=RESAMPLES, alternative="two-sided", rng=_rng(),
    )  # fmt: skip
    return float(result.pvalue)


def smallest_sign_flip_p(n: int) -> float:
    """The smallest two-sided p an exact sign-flip test of ``n`` differences can give."""
    return min(1.0, 2 / 2**n)


def _improvement(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """P(X > Y) over the last two axes' pairs: mean of 1[x > y] + 1/2 1[x = y]."""
    gt = (x[..., :, None] > y[..., None, :]).mean(axis=(-2, -1))
    eq = (x[..., :, None] == y[..., None, :]).mean(axis=(-2, -1))
    return gt + 0.5 * eq


@dataclass(frozen=True)
class Estimate:
    """A point estimate and its 95% interval (NaN bounds when none can be given)."""

    value: float
    low: float
    high: float


def probability_of_improvement(
    x: Sequence[float], y: Sequence[float], higher_is_better: bool = True
) -> Estimate:
    """rliable's P(X > Y) of one task (``>`` read as "better"), with the percentile 95%
    interval of ``RESAMPLES`` independent resamples of each row's runs; the interval needs
    ``MIN_BOOTSTRAP`` runs in each row."""
    a, b = finite_array(x), finite_array(y)
    if not len(a) or not len(b):
        return Estimate(math.nan, math.nan, math.nan)
    if not higher_is_better:
        a, b = -a, -b
    value = float(_improvement(a, b))
    if min(len(a), len(b)) < MIN_BOOTSTRAP:
        return Estimate(value, math.nan, math.nan)
    rng = _rng()
    ra = a[rng.integers(len(a), size=(RESAMPLES, len(a)))]
    rb = b[rng.integers(len(b), size=(RESAMPLES, len(b)))]
    low, high = np.percentile(_improvement(ra, rb), [50 * (1 - LEVEL), 50 * (1 + LEVEL)])
    return Estimate(value, float(low), float(high))


def interquartile_mean(values: Sequence[float]) -> Estimate:
    """rliable's IQM (the 25%-trimmed mean, ``scipy.stats.trim_mean``) with its stratified
    bootstrap percentile 95% interval (one task: the runs resampled); NaN below
    ``MIN_IQM`` runs, where there is too little to trim."""
    x = finite_array(values)
    if len(x) < MIN_IQM:
        return Estimate(math.nan, math.nan, math.nan)
    resampled = x[_rng().integers(len(x), size=(RESAMPLES, len(x)))]
    iqms = stats.trim_mean(resampled, 0.25, axis=1)
    low, high = np.percentile(iqms, [50 * (1 - LEVEL), 50 * (1 + LEVEL)])
    return Estimate(float(stats.trim_mean(x, 0.25)), float(low), float(high))


def expected_best(
    values: Sequence[float], n: int = BEST_OF, higher_is_better: bool = True
) -> float:
    """Dodge et al. (2019): the expected best of ``n`` runs drawn independently from the
    empirical distribution of the observed seeds, sum_i v_(i) (F(v_(i))^n - F(v_(i-1))^n).
    Minus the mean, it is what picking the best of ``n`` adds by selection alone."""
    x = finite_array(values)
    if not len(x):
        return math.nan
    v = np.unique(x if higher_is_better else -x)  # sorted distinct values
    cdf = np.searchsorted(np.sort(x if higher_is_better else -x), v, side="right") / len(x)
    previous = np.concatenate(([0.0], cdf[:-1]))
    best = float(np.sum(v * (cdf**n - previous**n)))
    return best if higher_is_better else -best


def cohen_dz(differences: Sequence[float]) -> float:
    """Paired effect size d_z = mean / sample sd of the differences (NaN below 2 values or
    when every difference is the same)."""
    d = finite_array(differences)
    if len(d) < 2 or np.ptp(d) == 0:
        return math.nan
    return float(d.mean() / d.std(ddof=1))


@dataclass(frozen=True)
class Comparison:
    """A row against the baseline over the seeds both have, beyond the t-test."""

    boot_low: float  # BCa interval of the mean paired difference
    boot_high: float
    perm_p: float  # exact sign-flip p, not yet adjusted
    p_improve: Estimate
    dz: float
    seeds_needed: float


def compare(row: Sequence[float], base: Sequence[float], higher_is_better: bool) -> Comparison:
    """The resampling statistics of ``row - base``, given the values of the shared seeds in
    the same seed order."""
    x, y = np.asarray(row, dtype=float), np.asarray(base, dtype=float)
    d = list(x - y)
    low, high = bca_interval(d)
    return Comparison(
        low, high, sign_flip_p(d), probability_of_improvement(x, y, higher_is_better),
        cohen_dz(d), seeds_needed(d),
    )  # fmt: skip


__all__ = [
    "BEST_OF",
    "DEFAULT_STATS",
    "MIN_BOOTSTRAP",
    "MIN_IQM",
    "RESAMPLES",
    "STATS",
    "Comparison",
    "Estimate",
    "bca_interval",
    "cohen_dz",
    "compare",
    "expected_best",
    "interquartile_mean",
    "no_interval_reason",
    "probability_of_improvement",
    "sign_flip_p",
    "smallest_sign_flip_p",
]
