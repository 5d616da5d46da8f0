"""Typed errors of the Batch API client. They carry the status code and a short body excerpt,
never the API key, and say what the on-call reader should do."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from airflow.sdk.exceptions import AirflowException

EXCERPT_CHARS = 300


class BatchApiError(AirflowException):
    """Base of every error the hooks raise for an HTTP exchange that did not succeed."""

    def __init__(self, message: str, *, status_code: int | None = None, body: str = "",
                 endpoint: str = "") -> None:
        # The upstream's status, not AirflowException's class-level HTTPStatus for Airflow's own API.
        self.status_code = status_code  # type: ignore[assignment]
        self.body_excerpt = body[:EXCERPT_CHARS]
        self.endpoint = endpoint
        where = f" ({endpoint})" if endpoint else ""
        code = f"HTTP {status_code}" if status_code is not None else "no HTTP answer"
        detail = f": {self.body_excerpt}" if self.body_excerpt else ""
        super().__init__(f"{code}{where}: {message}{detail}")


class BatchApiAuthError(BatchApiError):
    """401/403: the API key is missing or wrong. Retrying will not help; fix the connection."""


class BatchApiRedirectError(BatchApiError):
    """3xx: redirects are not followed, so the API key is never sent to a host it was not set for."""


class BatchApiBadRequestError(BatchApiError):
    """400/413/422: the API refused the request as sent. Nothing was processed."""


class BatchNotFoundError(BatchApiError):
    """404: unknown batch id, or (v2) output asked for before the batch completed."""


class BatchApiRateLimitedError(BatchApiError):
    """429 past the retry budget."""

    def __init__(self, *args, retry_after: float | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.retry_after = retry_after


class BatchRouterUnavailableError(BatchApiError):
    """503: the batch router is not configured or unavailable on the server."""

    def __init__(self, *args, retry_after: float | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.retry_after = retry_after


class BatchApiUpstreamError(BatchApiError):
    """500/502/504 past the retry budget: the service failed."""


class BatchApiConnectionError(BatchApiError):
    """No usable answer: the host could not be reached, timed out or dropped the connection."""


class SubmitOutcomeUnknownError(BatchApiError):
    """A submission failed after its body was sent, so the batch may exist and be billed.

    The hook does not resubmit on its own unless the connection allows it
    (``retry_ambiguous_submits``, safe when the server honours ``Idempotency-Key``).
    """


def _without_secrets(url: str) -> str:
    """A URL fit for a message: no userinfo, query or fragment (a pre-signed URL's token lives there)."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.hostname or "", parts.path, "", "")) if parts.netloc else parts.path


def error_for_status(status: int, message: str, *, body: str, endpoint: str,
                     retry_after: float | None = None, conn_id: str | None = None,
                     location: str | None = None) -> BatchApiError:
    if 300 <= status < 400:
        where = _without_secrets(location) if location else ""
        return BatchApiRedirectError(
            f"the API answered with a redirect{f' to {where}' if where else ''}; redirects are not "
            "followed, so the API key is never sent to another host. Set the connection's host to the "
            "final address", status_code=status, endpoint=endpoint)
    if status in (401, 403):
        which = f"connection {conn_id!r}" if conn_id else "the batch_api connection"
        return BatchApiAuthError(
            f"the API key was refused; set the password (API Key) of {which} or SCALEDOWN_API_KEY",
            status_code=status, body=body, endpoint=endpoint)
    if status == 404:
        return BatchNotFoundError(message, status_code=status, body=body, endpoint=endpoint)
    if status == 429:
        return BatchApiRateLimitedError(message, status_code=status, body=body, endpoint=endpoint,
                                        retry_after=retry_after)
    if status == 503:
        return BatchRouterUnavailableError(message, status_code=status, body=body, endpoint=endpoint,
                                           retry_after=retry_after)
    if status >= 500:
        return BatchApiUpstreamError(message, status_code=status, body=body, endpoint=endpoint)
    return BatchApiBadRequestError(message, status_code=status, body=body, endpoint=endpoint)
