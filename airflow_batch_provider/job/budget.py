"""How many status requests a wait may make: a rate that finds the API's limit instead of guessing it.

It starts at a polite rate and, after each cycle in which it was what kept finished batches from
being confirmed (most answers newly said "finished", none was throttled, and they came back about as
quickly as usual), doubles; while nothing new finishes it falls back towards the start. Once the API
has throttled it, it
grows by the starting rate a cycle instead, from half the rate that was throttled (as TCP finds a
link's capacity: a quick search, then a careful approach). A throttle (a 429, or any answer with
``Retry-After``, which the hooks honour before retrying) halves it, never below the starting rate
(so random faults cannot starve a job); it never goes above the ceiling (the connection's, or the
sensor's ``requests_per_minute``). From 600 a minute it reaches 6,000 in 4 cycles and 60,000 in 7.
"""

from __future__ import annotations

import math

from airflow_batch_provider.hooks.settings import ApiSettings
from airflow_batch_provider.logs import TaskLog

GROWTH = 2.0
# A cycle whose answers took longer than this many times the usual is a server slowing down: the
# rate holds instead of growing.
SLOW = 2.0
FASTEST_ANSWER = 0.001  # seconds: a clock that reads 0 must not divide the budget by zero


class RequestBudget:
    """:param start: requests a minute to begin with; :param ceiling: never more (None: no ceiling
    but the API's answers); :param concurrency: requests in flight at once, which bounds what a
    cycle can ask for in its interval."""

    def __init__(self, start: float, ceiling: float | None, concurrency: int, log: TaskLog) -> None:
        if not (math.isfinite(start) and start > 0) or concurrency < 1:
            raise ValueError(f"the starting rate must be a number > 0 and concurrency >= 1, got {start}, {concurrency}")
        self.start = start if ceiling is None else min(start, ceiling)
        self.ceiling = ceiling
        self.concurrency = concurrency
        self.rate = self.start
        self.log = log
        self._usual: float | None = None  # seconds per answer, a moving average of the cycles so far
        self._careful_from: float | None = None  # half the last rate throttled: grow slowly above it

    def per_cycle(self, interval: float) -> int:
        """Requests a cycle ``interval`` seconds long may make (at least one): what the rate allows,
        and no more than ``concurrency`` requests in flight can answer within the interval."""
        allowed = self.rate * interval / 60
        if self._usual:
            allowed = min(allowed, self.concurrency * interval / self._usual)
        return max(1, int(allowed))

    def cycle_done(self, answered: int, throttled: int, seconds_per_answer: float | None, *,
                   saturated: bool, confirmed: int) -> None:
        """Adapt to one cycle: ``answered`` requests came back, ``confirmed`` of them newly saying a
        batch had finished; ``throttled`` times the API said to slow down; answers took
        ``seconds_per_answer`` on average; ``saturated``: the cycle asked for all the rate allowed
        and more batches were waiting. The rate grows only while it is what keeps finished batches
        from being confirmed; while nothing finishes it falls back towards the start."""
        if throttled:
            lowered = max(self.start, self.rate / GROWTH)
            self._careful_from = lowered
            if lowered < self.rate:
                self.log.info("Status requests: %s a minute (the API asked to slow down %d time(s))",
                              f"{lowered:,.0f}", throttled)
            self.rate = lowered
            return
        if not answered or seconds_per_answer is None:
            return
        seconds = max(seconds_per_answer, FASTEST_ANSWER)
        slow = self._usual is not None and seconds > SLOW * self._usual
        self._usual = seconds if self._usual is None else 0.8 * self._usual + 0.2 * seconds
        if not confirmed:  # nothing new has finished: asking faster would only cost requests
            self.rate = max(self.start, self.rate / GROWTH)
            return
        if not saturated or slow or 2 * confirmed < answered:
            return
        if self.rate / 60 > self.concurrency / self._usual:  # the requests in flight bound it, not the rate
            return
        careful = self._careful_from is not None and self.rate >= self._careful_from
        raised = self.rate + self.start if careful else self.rate * GROWTH
        raised = raised if self.ceiling is None else min(self.ceiling, raised)
        if raised > self.rate:
            self.log.info("Status requests: %s a minute (finished batches wait to be confirmed, and answers "
                          "come back quickly)", f"{raised:,.0f}")
        self.rate = raised


def budget_for(settings: ApiSettings, ceiling: float | None, concurrency: int, log: TaskLog) -> RequestBudget:
    """A wait's budget: the connection's starting rate, under the lower of the connection's
    ``max_requests_per_minute`` and the wait's own ``requests_per_minute`` (either may be unset)."""
    lowest = min(settings.max_requests_per_minute, math.inf if ceiling is None else ceiling)
    return RequestBudget(settings.requests_per_minute, None if lowest == math.inf else lowest, concurrency, log)
