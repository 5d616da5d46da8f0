"""Typed errors of the Batch API client. They carry the status code and a short body excerpt,
never a credential, and say what the on-call reader should do.

Which class an answer gets, and whether it is retried, is decided in one place:
:func:`airflow_batch_provider.hooks.retry.rule_for`. Anything that reaches a message from the
connection or the wire goes through :func:`safe_url` (a URL) or :func:`redact` (any other text).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, unquote, urlsplit, urlunsplit

from airflow.sdk.exceptions import AirflowException, AirflowFailException

if TYPE_CHECKING:
    from airflow_batch_provider.hooks.retry import Rule

EXCERPT_CHARS = 300
MIN_SECRET = 5  # Airflow's own masker skips shorter values ([logging] min_length_masked_secret)


class BatchApiError(AirflowException):
    """Base of every error the hooks raise for an HTTP exchange that did not succeed."""

    retry_after: float | None = None  # seconds the server asked to wait (Retry-After), any status

    def __init__(self, message: str, *, status_code: int | None = None, body: str = "",
                 endpoint: str = "") -> None:
        # The upstream's status, not AirflowException's class-level HTTPStatus for Airflow's own API.
        self.status_code = status_code  # type: ignore[assignment]
        self.body_excerpt = body[:EXCERPT_CHARS]
        self.rule: Rule | None = None  # set by error_for_status; see hooks/retry.py
        self.endpoint = endpoint
        where = f" ({endpoint})" if endpoint else ""
        code = f"HTTP {status_code}" if status_code is not None else "no HTTP answer"
        detail = f": {self.body_excerpt}" if self.body_excerpt else ""
        super().__init__(f"{code}{where}: {message}{detail}")


class BatchApiAuthError(BatchApiError, AirflowFailException):
    """401/403: the API key is missing or wrong. Retrying will not help (Airflow's retries are
    skipped too); fix the connection."""


class BatchApiRedirectError(BatchApiError, AirflowFailException):
    """3xx: redirects are not followed, so the API key is never sent to a host it was not set for.
    Retrying will not help until the connection names the final address."""


class BatchApiBadRequestError(BatchApiError, AirflowFailException):
    """400/413/422 (and other 4xx without a rule of their own), or a batch over the limits: the API
    refused the request as sent, nothing was processed, and the same request gets the same answer."""


class BatchApiConflictError(BatchApiError):
    """409: a request with the same ``Idempotency-Key`` is still being handled; the batch may exist."""


class BatchNotFoundError(BatchApiError):
    """404: unknown batch id, or (v2) output asked for before the batch completed."""


class BatchApiRateLimitedError(BatchApiError):
    """429 past the retry budget."""

    def __init__(self, *args, retry_after: float | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.retry_after = retry_after


class BatchRouterUnavailableError(BatchApiError):
    """The API's own 503, "batch router is not configured": this deployment cannot take batches.
    Nothing was created; a quick retry does not fix configuration, so the hooks stop at once."""

    def __init__(self, *args, retry_after: float | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.retry_after = retry_after


class BatchApiUpstreamError(BatchApiError):
    """500/502/504, or a 503 that is not the API's own (a proxy, a load balancer), past the retry
    budget: the service or something in front of it failed."""


class BatchApiConnectionError(BatchApiError):
    """No usable answer: the host could not be reached, timed out or dropped the connection."""


class SubmitOutcomeUnknownError(BatchApiError):
    """A submission failed after its body was sent, so the batch may exist and be billed.

    The hook does not resubmit on its own unless the connection allows it
    (``retry_ambiguous_submits``, safe when the server honours ``Idempotency-Key``).
    """


def safe_url(url: str) -> str:
    """A URL fit for a message: no userinfo, query or fragment (a pre-signed URL's token lives there)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:  # unparseable: nothing of it is shown
        return "<a URL that cannot be parsed>"
    host = f"[{parts.hostname}]" if parts.hostname and ":" in parts.hostname else parts.hostname or ""  # IPv6
    host = f"{host}:{port}" if host and port else host
    return urlunsplit((parts.scheme, host, parts.path, "", "")) if parts.netloc else parts.path


def url_secrets(url: str) -> set[str]:
    """What a URL carries that must not be shown: its userinfo and its query's and fragment's values."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return {url}
    # The password; the user name only when it stands alone (a token as userinfo): a user name like
    # "api" would blank a common word out of every message.
    secret = parts.password or parts.username
    found = {secret, unquote(secret)} if secret else set()
    for text in (parts.query, parts.fragment):
        found |= {value for _, value in parse_qsl(text)}
        found |= {piece.partition("=")[2] or piece for piece in text.split("&")} - {""}  # raw, or a bare token
    return found


# userinfo in any URL of a text, and the query of any URL: third-party exception texts and answer
# bodies quote the URL a request went to.
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@'\"<>]*@")
_QUERY = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^\s?#'\"<>]*)[?#][^\s'\"<>]*")


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` fit for a message, a log line or an exception: every known secret replaced by
    ``***``, and the userinfo and query of every URL in it removed. Secrets shorter than
    :data:`MIN_SECRET` are left to the URL rules, as Airflow's masker leaves them (they would blank
    out common words)."""
    for secret in sorted((s for s in secrets if len(s) >= MIN_SECRET), key=len, reverse=True):
        text = text.replace(secret, "***")
    return _QUERY.sub(r"\1?***", _USERINFO.sub(r"\1", text))


def error_for_status(status: int, message: str, *, body: str, endpoint: str,
                     retry_after: float | None = None, batch_api_conn_id: str | None = None,
                     location: str | None = None, secrets: Iterable[str] = ()) -> BatchApiError:
    """The typed error for an answer ``status``, as :func:`~airflow_batch_provider.hooks.retry.rule_for`
    classifies it. ``secrets`` (the connection's) are removed from the body excerpt."""
    from airflow_batch_provider.hooks.retry import rule_for  # retry.py builds on these classes

    secrets = tuple(secrets)
    body = redact(body, secrets)
    message = redact(message, secrets)
    rule = rule_for(status, body)
    error: BatchApiError
    if rule.error is BatchApiRedirectError:
        where = safe_url(location) if location else ""
        error = BatchApiRedirectError(
            f"the API answered with a redirect{f' to {where}' if where else ''}; redirects are not "
            "followed, so the API key is never sent to another host. Set the connection's host to the "
            "final address", status_code=status, endpoint=endpoint)
    elif rule.error is BatchApiAuthError:
        which = f"connection {batch_api_conn_id!r}" if batch_api_conn_id else "the batch_api connection"
        error = BatchApiAuthError(
            f"the API key was refused; set the password (API Key) of {which} or SCALEDOWN_API_KEY",
            status_code=status, body=body, endpoint=endpoint)
    elif rule.error is BatchRouterUnavailableError:
        error = BatchRouterUnavailableError(
            "the API says its batch router is not configured: this deployment cannot take batches. Check "
            "that the connection's host is the batch API (default https://api.scaledown.xyz); if it is, ask "
            "the API's operators to configure the batch router. Not retried at once (nothing was created; a "
            "later try of the task may find it fixed)", status_code=status, body=body, endpoint=endpoint)
    else:
        error = rule.error(message, status_code=status, body=body, endpoint=endpoint)
    error.rule = rule
    error.retry_after = retry_after
    return error


class MissingApiKeyError(AirflowFailException, ValueError):
    """No API key: retrying cannot help until the connection is fixed."""


class InvalidApiKeyError(AirflowFailException, ValueError):
    """The API key cannot be sent as a header; the message never contains it."""


class TransportSettingsError(AirflowFailException, ValueError):
    """A transport extra that cannot be used (retrying cannot help); the message names the extra,
    never a credential."""


class TransportError(BatchApiConnectionError):
    """No usable answer; ``request_sent`` says whether the server may have received the request,
    ``transient`` whether trying again could help (a TLS or proxy misconfiguration cannot)."""

    def __init__(self, message: str, *, request_sent: bool, endpoint: str = "", transient: bool = True) -> None:
        super().__init__(message, endpoint=endpoint)
        self.request_sent = request_sent
        self.transient = transient


class TransportSetupError(TransportError, AirflowFailException):
    """The API cannot be reached as configured: its certificate is not trusted, a client certificate
    is refused or missing, the proxy wants other credentials, the URL is unusable. Nothing was sent,
    and no retry, not even the task's, helps until a setting changes."""

    def __init__(self, message: str, *, endpoint: str = "") -> None:
        super().__init__(message, request_sent=False, endpoint=endpoint, transient=False)
