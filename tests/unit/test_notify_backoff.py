"""Retry delays: exponential growth, the cap, and full jitter."""

from __future__ import annotations

import random

import pytest

from notify.backoff import retry_delay


def upper_bound(low: float, high: float) -> float:
    assert low == 0.0
    return high


@pytest.mark.parametrize(
    ("attempts", "ceiling"),
    [(0, 1.0), (1, 2.0), (2, 4.0), (5, 32.0), (8, 256.0), (9, 300.0), (30, 300.0), (5000, 300.0)],
)
def test_ceiling_doubles_until_cap(attempts, ceiling):
    assert retry_delay(attempts, 1.0, 300.0, uniform=upper_bound) == ceiling


def test_small_base_delay():
    assert retry_delay(3, 0.01, 0.05, uniform=upper_bound) == 0.05
    assert retry_delay(2, 0.01, 0.05, uniform=upper_bound) == pytest.approx(0.04)


def test_delay_is_random_within_ceiling():
    generator = random.Random(1234)

    delays = [retry_delay(4, 1.0, 300.0, uniform=generator.uniform) for _ in range(200)]

    assert all(0.0 <= delay <= 16.0 for delay in delays)
    assert len(set(delays)) == 200
    assert min(delays) < 4.0
    assert max(delays) > 12.0


def test_negative_attempts_raise():
    with pytest.raises(ValueError, match="attempts must be >= 0, got -1"):
        retry_delay(-1, 1.0, 300.0)
