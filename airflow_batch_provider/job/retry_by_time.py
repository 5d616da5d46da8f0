"""Retrying a batch by time, not by count: the one rule a submit's chunks, a wait's status reads and
a load's downloads follow: their threads try each request once (a failed one would otherwise sleep
through its backoffs in the hook, sending nothing), and the trigger's polls once the hook's retries
are spent.

Under sustained faults (30 % of requests failing, say) one request in a thousand fails all of the
hook's attempts in a row: counted per request, a big job would almost surely hit one and fail as a
whole. So a batch whose request failed goes back to be tried again later, with backoff, while the
others go on, and the job gives up only when

- the error cannot be fixed by trying again, by the hooks' one rule (:mod:`..hooks.retry`: a refused
  key, a batch the API does not know, a redirect, TLS or proxy set-up): the caller checks that first;
- one batch has been failing for longer than the time budget (the connection's
  ``retry_total_timeout``);
- or nothing at all has succeeded for that long (counted from the first failure since the last
  success: a wait's idle interval between polls is not an outage): the API, or the way to it, is down.

A batch's clock runs from the first failure since its last success, unless it was not tried again
for a while (a wait asks some batches seldom): a failure long after the last one starts it anew.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Hashable

from airflow_batch_provider.hooks.retry import pause_asked
from airflow_batch_provider.hooks.settings import ApiSettings
from airflow_batch_provider.job.errors import (
    GaveUp as GaveUp,
)

QUICK_TRIES = 8


class RetryByTime:
    """:meth:`failed` says when to try a batch again (or raises :class:`GaveUp`); :meth:`succeeded`
    clears its record. ``budget``: seconds a batch may keep failing, and the job may go without any
    success. Waits grow exponentially from ``initial_wait`` up to ``max_wait``, with full jitter
    (so batches that failed together do not come back together), or are what the API asked for.

    For a batch's first :data:`QUICK_TRIES` failures they grow with the fewer of its own failures and
    the job's failures since its last success: while other requests succeed, the API is up and a
    batch that failed by chance several times in a row (one in a hundred under 30 % faults) is tried
    again soon, not after the longest wait; in an outage every failure counts, and the waits grow as
    one batch's would. A batch failing longer than that, while others succeed, backs off on its own
    count (so a body that is always refused is not resent every second)."""

    def __init__(self, budget: float, *, initial_wait: float, max_wait: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.budget = budget
        self.initial_wait = initial_wait
        self.max_wait = max_wait
        self.clock = clock
        self.down_since: float | None = None  # when the first failure since the last success began
        self._succeeded_at = clock()  # the last success (or the start): no outage began before it
        self.retried = 0  # batches sent back to be tried again, for the task's log
        self._streak = 0  # failures since the job's last success, whatever the batch
        self._failing_since: dict[Hashable, float] = {}
        self._failures: dict[Hashable, int] = {}
        self._failed_at: dict[Hashable, float] = {}

    @classmethod
    def of(cls, settings: ApiSettings) -> RetryByTime:
        """As the connection says: the budget is its ``retry_total_timeout``, the waits its
        ``retry_initial_wait`` and ``retry_max_wait``."""
        return cls(settings.retry_total_timeout, initial_wait=settings.retry_initial_wait,
                   max_wait=settings.retry_max_wait)

    def succeeded(self, key: Hashable) -> None:
        """A request for ``key`` succeeded: its failures, and the job's streak, are forgotten."""
        self.down_since = None
        self._streak = 0
        self._succeeded_at = self.clock()
        if self._failing_since:
            self._forget(key)

    def _forget(self, key: Hashable) -> None:
        self._failing_since.pop(key, None)
        self._failures.pop(key, None)
        self._failed_at.pop(key, None)

    def failed(self, key: Hashable, error: BaseException, *, started: float | None = None) -> float:
        """Seconds to wait before ``key`` is tried again, after ``error``; ``started``: when the
        failed call began (the trigger's hook may have retried it for a while). Raises
        :class:`GaveUp` once the budget is spent."""
        now = self.clock()
        began = min(now, started if started is not None else now)
        if began - self._failed_at.get(key, began) > 2 * self.max_wait:
            self._forget(key)  # not asked since long before (a wait asks some batches seldom): a new streak
        self._failed_at[key] = now
        since = self._failing_since.setdefault(key, began)
        failures = self._failures[key] = self._failures.get(key, 0) + 1
        self._streak += 1
        if self.down_since is None:
            self.down_since = max(began, self._succeeded_at)
        down = self.down_since
        if now - down >= self.budget:
            raise GaveUp(f"no request of the job has succeeded for {now - down:.0f} s, longer than "
                         f"retry_total_timeout={self.budget:g} s: the API or the way to it is down; the last "
                         f"error: {error}")
        if now - since >= self.budget:
            raise GaveUp(f"it has failed for {now - since:.0f} s ({failures} tries), "
                         f"longer than retry_total_timeout={self.budget:g} s; the last error: {error}")
        self.retried += 1
        asked = pause_asked(error, self.max_wait)
        if asked is not None:
            return asked
        # While other requests succeed, the first QUICK_TRIES failures are taken for chance (eight in a
        # row at 30 % faults: one batch in 15,000); past them the batch's own count rules alone.
        exponent = failures if failures > QUICK_TRIES else min(failures, self._streak)
        return random.uniform(0.0, min(self.max_wait, self.initial_wait * 2 ** (exponent - 1)))

    @property
    def failing(self) -> int:
        """Batches failing now (not yet read or answered since their last failure)."""
        return len(self._failing_since)
