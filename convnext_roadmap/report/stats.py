"""The statistics of a study's deltas, with scipy.stats.

The design is paired: every random draw of a run is a function of (seed, epoch, batch), so
for one seed every step sees the same batches, augmentations and drop-path draws. A step's
effect is therefore measured on the seeds it shares with its parent, as the mean of the
per-seed differences (Bouthillier et al. 2021; Agarwal et al. 2021, "rliable").
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
BOOTSTRAP_FROM_SEEDS = 5  # a bootstrap interval of fewer pairs is not worth printing
BOOTSTRAP_RESAMPLES = 9999


@dataclass(frozen=True)
class PairedDelta:
    """child - parent over the seeds both have: mean, 95% t interval, bootstrap interval
    (>= 5 pairs), probability of improvement."""

    n: int
    mean: float
    ci_low: float
    ci_high: float
    boot_low: float
    boot_high: float
    prob_improvement: float

    @property
    def resolved(self) -> bool | None:
        """Whether the t interval excludes zero (None: no interval, fewer than 2 pairs)."""
        if math.isnan(self.ci_low):
            return None
        return bool(self.ci_low > 0 or self.ci_high < 0)

    @property
    def half_width(self) -> float:
        return (self.ci_high - self.ci_low) / 2


def t_interval(differences: Sequence[float], confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The t interval of the mean of paired differences; NaN with fewer than 2."""
    d = np.asarray(differences, dtype=float)
    if len(d) < 2:
        return math.nan, math.nan
    if np.allclose(d, d[0], rtol=0, atol=1e-9):  # no spread: the interval is the point
        return float(d.mean()), float(d.mean())
    low, high = stats.ttest_1samp(d, 0.0).confidence_interval(confidence)
    return float(low), float(high)


def bootstrap_interval(
    differences: Sequence[float], confidence: float = CONFIDENCE, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean difference, from BOOTSTRAP_FROM_SEEDS pairs
    on (NaN below); seeded, so a report is reproducible."""
    d = np.asarray(differences, dtype=float)
    if len(d) < BOOTSTRAP_FROM_SEEDS:
        return math.nan, math.nan
    if np.allclose(d, d[0], rtol=0, atol=1e-9):
        return float(d.mean()), float(d.mean())
    result = stats.bootstrap(
        (d,),
        np.mean,
        confidence_level=confidence,
        n_resamples=BOOTSTRAP_RESAMPLES,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def prob_improvement(child: Sequence[float], parent: Sequence[float]) -> float:
    """P(child > parent) as rliable defines it: the Mann-Whitney U statistic over all pairs of
    a child run and a parent run, ties counting one half, divided by the number of pairs."""
    if not len(child) or not len(parent):
        return math.nan
    return float(stats.mannwhitneyu(child, parent).statistic / (len(child) * len(parent)))


def paired_delta(child: Mapping[int, float], parent: Mapping[int, float]) -> PairedDelta:
    """child - parent on the seeds both have (keys are seeds)."""
    seeds = sorted(set(child) & set(parent))
    d = [child[s] - parent[s] for s in seeds]
    low, high = t_interval(d)
    boot_low, boot_high = bootstrap_interval(d)
    return PairedDelta(
        len(seeds),
        float(np.mean(d)) if d else math.nan,
        low,
        high,
        boot_low,
        boot_high,
        prob_improvement([child[s] for s in seeds], [parent[s] for s in seeds]),
    )


def seeds_to_resolve(sd: float, delta: float, confidence: float = CONFIDENCE, most: int = 1000) -> int | None:
    """The fewest seeds n whose paired t interval, with differences of standard deviation
    `sd`, is narrower than |delta| on each side: t(n-1) * sd / sqrt(n) < |delta|. None if
    more than `most` would be needed."""
    if not sd > 0:
        return 2
    for n in range(2, most + 1):
        if stats.t.ppf(0.5 + confidence / 2, n - 1) * sd / math.sqrt(n) < abs(delta):
            return n
    return None
