"""base/stats.py: intervals, outliers and differences beyond noise, against figures worked by hand."""

from __future__ import annotations

import math
import random

import pytest

from gpusplit.base.stats import Summary, change, outliers, summarize, t_critical


def test_the_interval_is_students_t_of_the_mean():
    s = summarize([10.0, 12.0, 11.0])  # mean 11, stdev 1, t(2) = 4.303: 11 +- 4.303 / sqrt(3)
    assert s.mean == 11.0 and s.n == 3 and s.outliers == ()
    assert (s.low, s.high) == pytest.approx((11 - 4.303 / math.sqrt(3), 11 + 4.303 / math.sqrt(3)))
    assert s.half_width_pct == pytest.approx(100 * 4.303 / math.sqrt(3) / 11)


def test_one_sample_has_no_interval():
    s = summarize([5.0])
    assert (s.low, s.high) == (-math.inf, math.inf) and s.half_width_pct is None


def test_t_falls_back_to_the_next_row_down_and_to_z():
    assert t_critical(35) == 2.021 and t_critical(1000) == 1.960 and t_critical(2) == 4.303


def test_tukeys_fences_set_aside_the_sample_far_out():
    samples = [100.0, 101.0, 99.0, 100.5, 99.5, 40.0]  # a repetition slowed by other work
    assert outliers(samples) == (40.0,)
    s = summarize(samples)
    assert s.outliers == (40.0,) and s.n == 5 and s.mean == pytest.approx(100.0)
    assert outliers([100.0, 40.0, 101.0]) == ()  # three samples: no telling


def test_a_change_beyond_the_noise_is_separated_and_within_it_is_not():
    base = summarize([100.0, 101.0, 99.0, 100.0])
    slower = summarize([80.0, 81.0, 79.0, 80.0])
    same = summarize([100.5, 99.0, 101.0, 99.5])
    c = change(base, slower)
    assert c.pct == pytest.approx(-20.0) and c.high_pct < 0 and c.separated
    assert c.low_pct <= -20.0 <= c.high_pct
    assert not change(base, same).separated
    assert not change(base, Summary(80.0, -math.inf, math.inf, 1)).separated  # one sample: nothing said


def test_noise_alone_is_rarely_called_a_change():
    """Two sets of five draws from one distribution: the conservative interval calls them the same
    in all but a few percent of 400 seeded trials (14 with this seed: 95 % intervals from five
    samples, outliers set aside, can still miss each other by chance)."""
    rng = random.Random(7)
    called = 0
    for _ in range(400):
        a = summarize([rng.gauss(100, 5) for _ in range(5)])
        b = summarize([rng.gauss(100, 5) for _ in range(5)])
        called += change(a, b).separated
    assert called <= 20
