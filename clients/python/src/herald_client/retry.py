"""When a failed call is retried, and after how long.

Only two failures are retried, because only they are known not to have published
anything (a retried ``POST /notify`` must not deliver twice):

- herald answered ``503`` with ``{"error": "unavailable"}``: its broker could not
  take the request, so nothing was published;
- the connection was refused (or otherwise failed to open), so the request was never sent.

A timeout, a connection dropped mid-request or any other status is raised at once:
the request may have been processed.
"""

from __future__ import annotations

import email.utils
import math
import random
import time
from dataclasses import dataclass, field


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry the safe failures.

    The delay before retry ``n`` (1-based) is drawn uniformly from
    ``[0, min(max_backoff, backoff * 2**(n-1))]`` ("full jitter", so many clients
    that failed together do not come back together). When herald sent
    ``Retry-After``, the delay is at least that long (plus up to ``backoff`` of
    jitter); a ``Retry-After`` above ``max_retry_after`` is not waited for: the
    error is raised with its ``retry_after`` set.
    """

    #: Tries in total, the first included; 1 disables retrying.
    attempts: int = 4
    #: Base of the exponential backoff, in seconds.
    backoff: float = 0.1
    #: Cap of one backoff delay, in seconds.
    max_backoff: float = 2.0
    #: The longest ``Retry-After`` honoured by waiting, in seconds.
    max_retry_after: float = 30.0
    #: Source of jitter (a seeded ``random.Random`` makes delays reproducible).
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("RetryPolicy.attempts must be at least 1")
        if self.backoff < 0 or self.max_backoff < 0 or self.max_retry_after < 0:
            raise ValueError("RetryPolicy delays must not be negative")

    def delay(self, attempt: int, retry_after: float | None = None) -> float | None:
        """Seconds to wait before the next try after try number ``attempt`` failed
        safely, or ``None`` when no further try should be made."""
        if attempt >= self.attempts:
            return None
        if retry_after is not None:
            if retry_after > self.max_retry_after:
                return None
            return retry_after + self.rng.uniform(0, self.backoff)
        return self.rng.uniform(0, min(self.max_backoff, self.backoff * 2 ** (attempt - 1)))


#: No retries at all.
NO_RETRY = RetryPolicy(attempts=1)


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None or when.tzinfo is None:
        return None
    seconds = when.timestamp() - (time.time() if now is None else now)
    return max(0.0, math.ceil(seconds))
