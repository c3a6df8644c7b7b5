"""RetryPolicy's arithmetic: full jitter within the cap, Retry-After as a floor."""

from __future__ import annotations

import random
from email.utils import formatdate

import pytest

from herald_client import RetryPolicy
from herald_client.retry import parse_retry_after


def test_backoff_grows_exponentially_within_the_cap_and_stops_after_the_last_attempt():
    policy = RetryPolicy(attempts=6, backoff=0.1, max_backoff=0.5, rng=random.Random(7))
    for attempt, ceiling in [(1, 0.1), (2, 0.2), (3, 0.4), (4, 0.5), (5, 0.5)]:
        delays = [policy.delay(attempt) for _ in range(200)]
        assert all(0 <= d <= ceiling for d in delays)
        assert max(delays) > ceiling * 0.8  # jitter spreads over the whole range
    assert policy.delay(6) is None


def test_retry_after_is_a_floor_with_a_little_jitter_and_a_limit():
    policy = RetryPolicy(attempts=3, backoff=0.1, max_retry_after=10)
    assert 2.0 <= policy.delay(1, retry_after=2.0) <= 2.1
    assert policy.delay(1, retry_after=11) is None
    assert policy.delay(3, retry_after=1) is None


def test_retry_after_header_forms():
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after(formatdate(1_000_010, usegmt=True), now=1_000_000) == 10
    assert parse_retry_after(formatdate(1_000_000, usegmt=True), now=1_000_100) == 0


def test_attempts_must_be_positive():
    with pytest.raises(ValueError):
        RetryPolicy(attempts=0)
