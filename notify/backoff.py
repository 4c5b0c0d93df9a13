"""Retry delays: exponential backoff with full jitter."""

from __future__ import annotations

import random
from collections.abc import Callable


def retry_delay(
    attempts: int, base_delay: float, max_delay: float, *, uniform: Callable[[float, float], float] = random.uniform
) -> float:
    """Return a random delay in seconds, uniform in ``[0, min(max_delay, base_delay * 2**attempts)]``.

    Full jitter spreads the retries of many rows that failed together, such
    as every email of one canceled flight while the SMTP server was down.
    ``uniform`` is injectable so tests can pin the random draw.
    """
    if attempts < 0:
        raise ValueError(f"attempts must be >= 0, got {attempts}")
    # The exponent is capped because 2.0**1024 raises OverflowError. Any
    # product above max_delay, even inf, gives the same ceiling.
    ceiling = min(max_delay, base_delay * 2.0 ** min(attempts, 1000))
    return uniform(0.0, ceiling)
