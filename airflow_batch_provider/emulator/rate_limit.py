"""The emulator's request rate limit, as an API enforces one per key: a token bucket.

``per_minute`` requests a minute, refilled continuously, with a burst of one second's worth (at
least one request). A request beyond it is answered 429 with ``Retry-After`` (whole seconds, as
HTTP's delta-seconds form allows): the time until a token is free, at least 1. Control routes are
never limited; every limited request is counted.
"""

from __future__ import annotations

import math
import time


class RateLimit:
    """A token bucket: requests per minute, answered 429 beyond it."""
    def __init__(self, per_minute: float | None) -> None:
        self.limited = 0
        self.configure(per_minute)

    def configure(self, per_minute: float | None) -> None:
        """Use this limit from now on (None: no limit)."""
        if per_minute is not None and (isinstance(per_minute, bool) or not isinstance(per_minute, (int, float))
                                       or per_minute <= 0):
            raise ValueError(f"rate_limit_per_minute must be a number > 0 or null, got {per_minute!r}")
        self.per_minute = per_minute
        self.capacity = max(1.0, (per_minute or 0) / 60)
        self.tokens = self.capacity
        self.refilled = time.monotonic()

    def take(self) -> float | None:
        """None if the request may go on; else the seconds to wait (its Retry-After)."""
        if self.per_minute is None:
            return None
        now = time.monotonic()
        rate = self.per_minute / 60
        self.tokens = min(self.capacity, self.tokens + (now - self.refilled) * rate)
        self.refilled = now
        if self.tokens >= 1:
            self.tokens -= 1
            return None
        self.limited += 1
        return max(1.0, math.ceil((1 - self.tokens) / rate))
