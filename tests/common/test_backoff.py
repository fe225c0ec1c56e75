"""common.backoff: full jitter from the first delay, doubling caps, reset."""

from __future__ import annotations

import pytest

from common.backoff import Backoff, delay


def caps(lo: float, hi: float, attempts: int) -> list[float]:
    """The upper ends each attempt draws from (rand returns its upper bound)."""
    b = Backoff(lo, hi, rand=lambda _a, b: b)
    return [b.next() for _ in range(attempts)]


def test_the_first_delay_is_jittered_not_the_floor() -> None:
    seen: list[tuple[float, float]] = []
    Backoff(0.5, 30.0, rand=lambda a, b: seen.append((a, b)) or a).next()
    assert seen == [(0.5, 1.0)]


def test_caps_double_up_to_hi_and_reset_starts_over() -> None:
    assert caps(0.5, 5.0, 6) == [1.0, 2.0, 4.0, 5.0, 5.0, 5.0]
    b = Backoff(1.0, 8.0, rand=lambda _a, b: b)
    b.next(), b.next()
    b.reset()
    assert b.next() == 2.0


def test_real_draws_stay_between_lo_and_the_cap() -> None:
    draws = [delay(3, 0.25, 10.0) for _ in range(200)]
    assert all(0.25 <= d <= 2.0 for d in draws)
    assert len(set(draws)) > 100  # jittered, not a constant
    assert delay(10_000, 1.0, 3.0) <= 3.0  # huge attempt counts do not overflow


@pytest.mark.parametrize(("lo", "hi"), [(0.0, 1.0), (2.0, 1.0), (-1.0, 1.0)])
def test_bad_bounds_are_refused(lo: float, hi: float) -> None:
    with pytest.raises(ValueError, match="0 < lo <= hi"):
        Backoff(lo, hi)
