"""The one retry rule of both hooks, and so of submit, wait and load: what an answer means, what
is retried, how long to wait, when to stop.

:func:`rule_for` maps every HTTP status (and, for 503, who sent it) to a :class:`Rule`: whether a
POST so answered surely created no batch, whether trying again can help, and whether the failure is
final (an ``AirflowFailException``: Airflow's own task retries are skipped too, as a setting must
change first). docs/limits-and-retries.md has the table; a test keeps the two in step.

Retried: connection errors and timeouts, 409, 429, 500, 502, 504 and a 503 that is not the API's own
— with exponential backoff and full jitter, honouring ``Retry-After`` (seconds or an HTTP date),
bounded by attempts and by total time. Everything else fails at once.

A request the server may have acted on is *ambiguous*: a dropped connection after the body went out,
a read timeout, a 409, a 5xx other than the API's own 503 (a proxy's 503 may come after it forwarded
the request). Reads are always safe to repeat. A submission is repeated only when it is idempotent
(the caller allows it; the hook then sends the same ``Idempotency-Key``), because repeating it
otherwise could create — and bill — a second batch. 429, the API's own 503 and the refusals (4xx,
307/308) mean the request was not processed, and connection failures before anything was sent are
safe too.
"""

from __future__ import annotations

import email.utils
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, overload

import requests
import tenacity
from airflow.sdk.exceptions import AirflowFailException
from requests.exceptions import ConnectTimeout, ReadTimeout
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

from airflow_batch_provider.hooks.errors import (
    BatchApiAuthError,
    BatchApiBadRequestError,
    BatchApiConflictError,
    BatchApiError,
    BatchApiRateLimitedError,
    BatchApiRedirectError,
    BatchApiUpstreamError,
    BatchNotFoundError,
    BatchRouterUnavailableError,
    SubmitOutcomeUnknownError,
    TransportError as TransportError,
    TransportSetupError as TransportSetupError,
)
from airflow_batch_provider.hooks.settings import ApiSettings
from airflow_batch_provider.hooks.transport import tls_setup_problem
from airflow_batch_provider.logs import TaskLog


def misconfigured(settings: ApiSettings, url: str, cause: str, endpoint: str) -> TransportSetupError:
    """The error for a TLS or proxy set-up that fails, the same from both hooks: it names the host,
    the cause, and the CA bundle and proxy the request used (never a credential)."""
    return TransportSetupError(
        f"cannot reach {settings.shown_url}: {cause}; used {settings.transport.describe(url)}. Check the "
        "connection's verify, cert and proxies extras (or REQUESTS_CA_BUNDLE, HTTPS_PROXY on this machine)",
        endpoint=endpoint)


@dataclass(frozen=True)
class Rule:
    """What one kind of answer means, for every caller (submit, wait, load).

    :param not_created: a POST so answered surely created no batch (sending it again cannot pay twice).
    :param retry: trying again may help: retried within the connection's retry budget (attempts and
        total time, ``Retry-After`` honoured) — a POST that may have created a batch only when the
        submit is idempotent (``retry_ambiguous_submits``).
    :param error: the typed error raised once the hook stops; an ``AirflowFailException`` subclass
        where no retry, not even Airflow's task retry, can help until a setting changes.
    :param meaning: one line for docs and messages.
    """

    not_created: bool
    retry: bool
    error: type[BatchApiError]
    meaning: str

    @property
    def fail_fast(self) -> bool:
        """Final: fix a setting first; Airflow does not retry the task either."""
        return issubclass(self.error, AirflowFailException)


_REFUSED = Rule(True, False, BatchApiBadRequestError, "refused as sent; the same request gets the same answer")
_SERVER_FAILED = Rule(False, True, BatchApiUpstreamError, "the service failed; it may have acted on the request")

RULES: dict[int, Rule] = {
    301: Rule(False, False, BatchApiRedirectError, "redirect; may mean 'created, look there'; not followed"),
    302: Rule(False, False, BatchApiRedirectError, "redirect; may mean 'created, look there'; not followed"),
    303: Rule(False, False, BatchApiRedirectError, "'see other': may mean 'created, look there'; not followed"),
    307: Rule(True, False, BatchApiRedirectError, "'send it there instead': not processed here; not followed"),
    308: Rule(True, False, BatchApiRedirectError, "'send it there instead': not processed here; not followed"),
    400: _REFUSED,
    401: Rule(True, False, BatchApiAuthError, "the API key is missing or wrong"),
    403: Rule(True, False, BatchApiAuthError, "the API key is not allowed this"),
    404: Rule(True, False, BatchNotFoundError,
              "unknown batch, or (v2) output not ready; a later try of the task may find it"),
    409: Rule(False, True, BatchApiConflictError,
              "the same Idempotency-Key is still being handled: the batch may exist"),
    413: _REFUSED,
    422: _REFUSED,
    429: Rule(True, True, BatchApiRateLimitedError, "rate limited before processing"),
    500: _SERVER_FAILED,
    502: Rule(False, True, BatchApiUpstreamError, "the API's call to its batch router failed; it may have acted"),
    503: Rule(False, True, BatchApiUpstreamError,
              "unavailable, said by a proxy or load balancer (not the API's own body): usually brief, but it "
              "may come after the request was forwarded"),
    504: Rule(False, True, BatchApiUpstreamError, "a gateway timed out waiting; the service may have acted"),
}
"""Every status with a rule of its own; other statuses take their class's (see :func:`rule_for`)."""

ROUTER_NOT_CONFIGURED = Rule(
    True, False, BatchRouterUnavailableError,
    "the API's own 503, 'batch router is not configured': nothing was created, and a quick retry does not "
    "fix configuration")

_ROUTER_MESSAGE = re.compile(r"\brouter\b.*\bnot configured\b", re.IGNORECASE | re.DOTALL)


def is_router_not_configured(body: str) -> bool:
    """The API's own 503 (spec §2.3): a JSON error body whose message says the batch router is not
    configured. A proxy's 503 has no such body (HTML, text, or nothing)."""
    try:
        data = json.loads(body)
    except ValueError:
        return False
    if not isinstance(data, dict):
        return False
    texts = [data.get(k) for k in ("detail", "message", "error")]
    texts += [data["error"].get("message")] if isinstance(data.get("error"), dict) else []
    return any(isinstance(t, str) and _ROUTER_MESSAGE.search(t) for t in texts)


def rule_for(status: int, body: str = "") -> Rule:
    """The rule for an answer with ``status`` (>= 300) and ``body``."""
    if status == 503 and is_router_not_configured(body):
        return ROUTER_NOT_CONFIGURED
    if status in RULES:
        return RULES[status]
    if 300 <= status < 400:
        return RULES[301]  # an unknown redirect: not followed, and it may mean "created elsewhere"
    if 400 <= status < 500:
        return _REFUSED
    return _SERVER_FAILED


def _rule_of(exc: BatchApiError) -> Rule | None:
    if exc.rule is not None:
        return exc.rule
    return rule_for(exc.status_code, exc.body_excerpt) if exc.status_code is not None else None


def is_retryable(exc: BaseException, *, idempotent: bool) -> bool:
    """Whether trying a failed request again may help, by the hooks' one rule; ``idempotent``: the
    request may be repeated (a read, or a submit the server deduplicates)."""
    if isinstance(exc, TransportError):
        return exc.transient and (idempotent or not exc.request_sent)
    if isinstance(exc, BatchApiError):
        rule = _rule_of(exc)
        return rule is not None and rule.retry and (idempotent or rule.not_created)
    return False


def slowed_down(exc: BaseException) -> bool:
    """The API asked the client to slow down: a 429, or an answer naming a ``Retry-After``."""
    return isinstance(exc, BatchApiRateLimitedError) or (isinstance(exc, BatchApiError) and exc.retry_after is not None)


def pause_asked(exc: BaseException, longest: float) -> float | None:
    """Seconds the API asked the client to slow down for (its ``Retry-After``, else 1), as the retry
    waits them (at most ``longest``, the connection's ``retry_max_wait``); None if it did not ask."""
    if not slowed_down(exc):
        return None
    asked = exc.retry_after if isinstance(exc, BatchApiError) and exc.retry_after else 1.0
    return min(asked, longest)


def surely_not_created(exc: BaseException) -> bool:
    """True when a failed POST cannot have created a batch: it was refused, or never sent."""
    if isinstance(exc, SubmitOutcomeUnknownError):
        return False
    if isinstance(exc, TransportError):
        return not exc.request_sent
    if isinstance(exc, BatchApiError):
        rule = _rule_of(exc)
        # No status: refused by the hook's own checks (limits, a header it cannot send), before sending.
        return rule.not_created if rule is not None else True
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
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


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
                 asynchronous: Literal[False] = False,
                 on_failure: Callable[[BaseException], None] | None = None,
                 attempts: int | None = None) -> tenacity.Retrying: ...
@overload
def retry_policy(settings: ApiSettings, *, idempotent: bool, log: TaskLog, what: str,
                 asynchronous: Literal[True],
                 on_failure: Callable[[BaseException], None] | None = None,
                 attempts: int | None = None) -> tenacity.AsyncRetrying: ...
def retry_policy(settings: ApiSettings, *, idempotent: bool, log: TaskLog, what: str,
                 asynchronous: bool = False,
                 on_failure: Callable[[BaseException], None] | None = None,
                 attempts: int | None = None) -> tenacity.Retrying | tenacity.AsyncRetrying:
    """``on_failure`` is told of every failed attempt, the last one too (a wait's request budget
    learns from each 429). ``attempts``: at most this many, instead of the connection's
    ``retry_max_attempts`` (1: the caller retries by time, job/retry_by_time.py)."""
    most = attempts or settings.retry_max_attempts

    def retry(failure: BaseException) -> bool:  # tenacity asks once per failed attempt
        if on_failure is not None:
            on_failure(failure)
        return is_retryable(failure, idempotent=idempotent)

    def before_sleep(state: tenacity.RetryCallState) -> None:
        log.warning("%s failed (%s); retrying in %.1f s (attempt %d of %d)", what,
                    state.outcome and state.outcome.exception(), state.next_action.sleep if state.next_action else 0.0,
                    state.attempt_number + 1, most)

    once = most == 1  # nothing is waited: no wait to work out (and to warn about)
    kwargs: dict[str, Any] = dict(
        retry=tenacity.retry_if_exception(retry),
        wait=tenacity.wait_none() if once else _BackoffOrRetryAfter(settings.retry_initial_wait,
                                                                    settings.retry_max_wait, log),
        stop=tenacity.stop_after_attempt(1) if once else (
            _RetryAfterPastBudget(settings.retry_total_timeout, log)  # first: it says why it stops
            | tenacity.stop_after_attempt(most)
            | tenacity.stop_before_delay(settings.retry_total_timeout)),
        before_sleep=before_sleep,
        reraise=True,
    )
    if asynchronous:
        return tenacity.AsyncRetrying(**kwargs)
    return tenacity.Retrying(sleep=time.sleep, **kwargs)


# What a proxy answered to CONNECT, as urllib3 quotes it: the status and the proxy's reason.
_PROXY_ANSWER = re.compile(r"Tunnel connection failed: ((\d{3})(?: [A-Za-z][A-Za-z -]{0,60})?)")


def transport_error(exc: requests.RequestException, endpoint: str, settings: ApiSettings) -> TransportError:
    """Classified by cause: a failed TLS handshake, or a proxy refusing our credentials, means
    nothing was sent and no retry can help; a proxy that cannot be reached or cannot reach the API
    may recover. Messages name the host (redacted), the cause and the CA bundle and proxy used, never
    the exception's own text: requests quotes the URL, query and all. Raise the result outside the
    ``except`` block, so ``exc`` does not ride along as ``__context__``."""
    url = settings.base_url
    problem = tls_setup_problem(exc) if isinstance(exc, requests.exceptions.SSLError) else None
    if problem:
        return misconfigured(settings, url, f"the TLS handshake failed ({problem})", endpoint)
    if isinstance(exc, requests.exceptions.ProxyError):
        answer = _PROXY_ANSWER.search(str(exc))
        if answer and answer.group(2) in ("403", "407"):
            return misconfigured(settings, url, f"the proxy refused ({answer.group(1)})", endpoint)
        return TransportError(f"the proxy for {settings.shown_url} failed: "
                              f"{f'it answered {answer.group(1)}' if answer else 'it could not be reached'}",
                              request_sent=False, endpoint=endpoint)
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    never_sent = isinstance(exc, ConnectTimeout) or isinstance(reason, (NewConnectionError, ConnectTimeoutError))
    kind = "timed out" if isinstance(exc, (ConnectTimeout, ReadTimeout)) else "failed"
    return TransportError(f"the request to {settings.shown_url} {kind}: {type(exc).__name__}",
                          request_sent=not never_sent, endpoint=endpoint)
