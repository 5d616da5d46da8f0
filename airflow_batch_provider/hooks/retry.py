"""The one retry policy of both hooks: what is retried, how long to wait, when to stop.

Retried: connection errors and timeouts, 429, 500, 502, 503, 504 — with exponential backoff and full
jitter, honouring ``Retry-After`` (seconds or an HTTP date), bounded by attempts and by total time.
400/401/403/404/413/422 fail at once.

A request the server may have acted on is *ambiguous*: a dropped connection after the body went out,
a read timeout, a 500/502/504. Reads are always safe to repeat. A submission is repeated only when it
is idempotent (the caller allows it; the hook then sends the same ``Idempotency-Key``), because
repeating it otherwise could create — and bill — a second batch. 429 and 503 mean the request was
not processed, and connection failures before anything was sent are safe too.
"""

from __future__ import annotations

import email.utils
import time
from datetime import datetime, timezone
from typing import Any, Literal, overload

import tenacity

from airflow_batch_provider.hooks.errors import (
    BatchApiConnectionError,
    BatchApiRateLimitedError,
    BatchApiUpstreamError,
    BatchRouterUnavailableError,
)
from airflow_batch_provider.hooks.settings import ApiSettings
from airflow_batch_provider.logs import TaskLog


class TransportError(BatchApiConnectionError):
    """No usable answer; ``request_sent`` says whether the server may have received the request,
    ``transient`` whether trying again could help (a TLS or proxy misconfiguration cannot)."""

    def __init__(self, message: str, *, request_sent: bool, endpoint: str = "", transient: bool = True) -> None:
        super().__init__(message, endpoint=endpoint)
        self.request_sent = request_sent
        self.transient = transient


def is_retryable(exc: BaseException, *, idempotent: bool) -> bool:
    if isinstance(exc, (BatchApiRateLimitedError, BatchRouterUnavailableError)):
        return True
    if isinstance(exc, BatchApiUpstreamError):
        return idempotent
    if isinstance(exc, TransportError):
        return exc.transient and (idempotent or not exc.request_sent)
    return False


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` in seconds, from either of its forms; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():  # "²" is a digit to str.isdigit, not to HTTP
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


class _BackoffOrRetryAfter(tenacity.wait.wait_base):
    """Full-jitter exponential backoff, unless the server said how long to wait; a ``Retry-After``
    longer than ``retry_max_wait`` is capped there (and logged)."""

    def __init__(self, initial: float, maximum: float, log: TaskLog) -> None:
        self.backoff = tenacity.wait_random_exponential(multiplier=initial, max=maximum)
        self.maximum = maximum
        self.log = log

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        retry_after = _retry_after(retry_state)
        if retry_after is None:
            return self.backoff(retry_state)
        if retry_after > self.maximum:
            self.log.warning("The server asked to wait %.0f s (Retry-After); waiting retry_max_wait=%.0f s instead",
                             retry_after, self.maximum)
            return self.maximum
        return retry_after


def _retry_after(retry_state: tenacity.RetryCallState) -> float | None:
    exc = retry_state.outcome.exception() if retry_state.outcome else None
    return getattr(exc, "retry_after", None)


class _RetryAfterPastBudget(tenacity.stop.stop_base):
    """Give up at once when the server asks to wait longer than the time budget has left."""

    def __init__(self, budget: float, log: TaskLog) -> None:
        self.budget = budget
        self.log = log

    def __call__(self, retry_state: tenacity.RetryCallState) -> bool:
        retry_after = _retry_after(retry_state)
        left = self.budget - (retry_state.seconds_since_start or 0.0)
        if retry_after is not None and retry_after > left:
            self.log.warning("The server asked to wait %.0f s (Retry-After), more than the %.0f s left of "
                             "retry_total_timeout; giving up now", retry_after, max(left, 0.0))
            return True
        return False


@overload
def retry_policy(settings: ApiSettings, *, idempotent: bool, log: TaskLog, what: str,
                 asynchronous: Literal[False] = False) -> tenacity.Retrying: ...
@overload
def retry_policy(settings: ApiSettings, *, idempotent: bool, log: TaskLog, what: str,
                 asynchronous: Literal[True]) -> tenacity.AsyncRetrying: ...
def retry_policy(settings: ApiSettings, *, idempotent: bool, log: TaskLog, what: str,
                 asynchronous: bool = False) -> tenacity.Retrying | tenacity.AsyncRetrying:
    def before_sleep(state: tenacity.RetryCallState) -> None:
        log.warning("%s failed (%s); retrying in %.1f s (attempt %d of %d)", what,
                    state.outcome and state.outcome.exception(), state.next_action.sleep if state.next_action else 0.0,
                    state.attempt_number + 1, settings.retry_max_attempts)

    kwargs: dict[str, Any] = dict(
        retry=tenacity.retry_if_exception(lambda exc: is_retryable(exc, idempotent=idempotent)),
        wait=_BackoffOrRetryAfter(settings.retry_initial_wait, settings.retry_max_wait, log),
        stop=(_RetryAfterPastBudget(settings.retry_total_timeout, log)  # first: it says why it stops
              | tenacity.stop_after_attempt(settings.retry_max_attempts)
              | tenacity.stop_before_delay(settings.retry_total_timeout)),
        before_sleep=before_sleep,
        reraise=True,
    )
    if asynchronous:
        return tenacity.AsyncRetrying(**kwargs)
    return tenacity.Retrying(sleep=time.sleep, **kwargs)
