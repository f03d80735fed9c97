"""How far a measured figure can be trusted: the mean of repetitions with a 95 % interval, the
outliers set aside, and whether two figures differ beyond their noise.

The rules, stated once (the README repeats them):
- Outliers: with 4 repetitions or more, a sample beyond Tukey's fences (1.5 interquartile ranges
  outside the quartiles) is set aside, as pyperf and hyperfine flag them; with fewer there is no
  telling an outlier from the spread.
- Interval: Student's t-interval of the mean of the samples kept, 95 % two-sided. One sample has
  no interval: nothing can be said of its noise.
- Two figures differ when their intervals do not overlap; the change is the ratio of the means,
  and its interval the ratios of the intervals' far ends (conservative: never narrower than the
  truth for independent runs).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

# Student's t, 97.5th percentile (95 % two-sided), by degrees of freedom; above 30 the next row down
_T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
         11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131, 16: 2.120, 17: 2.110, 18: 2.101, 19: 2.093,
         20: 2.086, 21: 2.080, 22: 2.074, 23: 2.069, 24: 2.064, 25: 2.060, 26: 2.056, 27: 2.052, 28: 2.048,
         29: 2.045, 30: 2.042, 40: 2.021, 60: 2.000, 120: 1.980}  # fmt: skip
_Z975 = 1.960
TUKEY_K = 1.5


def t_critical(degrees: int) -> float:
    """Student's t at 97.5 % for `degrees` degrees of freedom (at least 1)."""
    if degrees in _T975:
        return _T975[degrees]
    above = [d for d in _T975 if d >= degrees]
    return _T975[min(above)] if above else _Z975  # the next tabulated row down in t: a wider interval


@dataclass(frozen=True)
class Summary:
    """Repetitions of one figure: their mean with a 95 % interval, and the samples set aside."""

    mean: float
    low: float  # the interval's ends; -inf..inf for a single sample
    high: float
    n: int  # the samples kept
    outliers: tuple[float, ...] = ()

    @property
    def half_width_pct(self) -> float | None:
        """The interval's half width in percent of the mean (None where there is none)."""
        if not math.isfinite(self.high - self.low) or not self.mean:
            return None
        return 100 * (self.high - self.low) / 2 / abs(self.mean)


def outliers(samples: Sequence[float]) -> tuple[float, ...]:
    """The samples beyond Tukey's fences (none with fewer than 4 samples)."""
    if len(samples) < 4:
        return ()
    q1, _, q3 = statistics.quantiles(samples, n=4, method="inclusive")
    low, high = q1 - TUKEY_K * (q3 - q1), q3 + TUKEY_K * (q3 - q1)
    return tuple(s for s in samples if s < low or s > high)


def summarize(samples: Sequence[float]) -> Summary:
    """The mean of `samples` (outliers set aside) with its 95 % t-interval."""
    if not samples:
        raise ValueError("no samples")
    aside = outliers(samples)
    kept = [s for s in samples if s not in aside] if aside else list(samples)
    mean = statistics.fmean(kept)
    if len(kept) < 2:
        return Summary(mean, -math.inf, math.inf, len(kept), aside)
    half = t_critical(len(kept) - 1) * statistics.stdev(kept) / math.sqrt(len(kept))
    return Summary(mean, mean - half, mean + half, len(kept), aside)


@dataclass(frozen=True)
class Change:
    """`new` against `base`, in percent of `base` (+: higher), with its interval."""

    pct: float
    low_pct: float
    high_pct: float

    @property
    def separated(self) -> bool:
        """The intervals do not overlap: a difference beyond the noise."""
        return self.low_pct > 0 or self.high_pct < 0


def change(base: Summary, new: Summary) -> Change:
    """How `new` differs from `base` (both positive figures such as tokens/s)."""
    pct = 100 * (new.mean / base.mean - 1) if base.mean else math.inf
    low = 100 * (new.low / base.high - 1) if base.high > 0 and math.isfinite(base.high) and new.low > 0 else -math.inf
    high = 100 * (new.high / base.low - 1) if base.low > 0 and math.isfinite(new.high) else math.inf
    return Change(pct, low, high)
