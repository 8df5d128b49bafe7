"""95% confidence intervals for scores: Wilson when every item is one 0/1 outcome, else a percentile bootstrap.

The bootstrap resamples items (2000 resamples, seeded), stratified by language for the multilingual averages; for
IFEval's instruction-level accuracy, items are resampled with all their instructions. Which method gave an interval
is returned with it, and the run records it in its manifest (`extra.ci`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from nano2.errors import Nano2Error

CI_LEVEL = 0.95


def _z(level: float) -> float:
    from statistics import NormalDist

    return NormalDist().inv_cdf(0.5 + level / 2)


def wilson_interval(successes: int, n: int, level: float = CI_LEVEL) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (well behaved at 0 and 1, unlike the normal interval)."""
    if n <= 0 or not 0 <= successes <= n:
        raise Nano2Error(f"wilson_interval needs 0 <= successes <= n and n > 0, got {successes}/{n}")
    z = _z(level)
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def bootstrap_interval(
    strata: Sequence[tuple[np.ndarray, np.ndarray]], resamples: int = 2000, seed: int = 0, level: float = CI_LEVEL
) -> tuple[float, float]:
    """Percentile bootstrap of mean over strata of sum(numerators) / sum(denominators), resampling items per stratum.

    One stratum with denominators of 1 is the plain mean of per-item values; several strata (languages) give the
    average of per-language scores; instruction-level IFEval is one stratum of (followed, instructions) per item.
    """
    rng = np.random.default_rng(seed)
    totals = np.zeros(resamples)
    for numerators, denominators in strata:
        size = len(numerators)
        if size == 0:
            raise Nano2Error("bootstrap_interval: an empty stratum")
        picks = rng.integers(0, size, size=(resamples, size))
        totals += numerators[picks].sum(axis=1) / denominators[picks].sum(axis=1)
    estimates = totals / len(strata)
    alpha = (1 - level) / 2
    low, high = np.quantile(estimates, [alpha, 1 - alpha])
    return float(low), float(high)


@dataclass(frozen=True)
class Estimate:
    score: float
    ci_low: float
    ci_high: float
    method: str


def estimate(
    strata: Sequence[tuple[Sequence[float], Sequence[float]]], resamples: int = 2000, seed: int = 0
) -> Estimate:
    """Score and 95% CI: Wilson when every item is one 0/1 outcome (strata of equal size), else the bootstrap."""
    arrays = [(np.asarray(num, dtype=float), np.asarray(den, dtype=float)) for num, den in strata]
    score = float(np.mean([num.sum() / den.sum() for num, den in arrays]))
    binary = all(np.all(den == 1) and np.all((num == 0) | (num == 1)) for num, den in arrays)
    if binary and len({len(num) for num, _ in arrays}) == 1:  # equal-size strata: the mean of means is pooled
        successes = int(sum(num.sum() for num, _ in arrays))
        low, high = wilson_interval(successes, sum(len(num) for num, _ in arrays))
        return Estimate(score, low, high, "wilson")
    low, high = bootstrap_interval(arrays, resamples, seed)
    return Estimate(score, low, high, f"bootstrap({resamples})")
