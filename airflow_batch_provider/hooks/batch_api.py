"""``BatchApiHook``: the synchronous ScaleDown Batch API client, on Airflow's ``HttpHook``.

The only place (with its async twin) that speaks HTTP. Connection type ``batch_api``: host is the
base URL (default ``https://api.scaledown.xyz``), password the API key (sent as ``x-api-key``; falls
back to ``SCALEDOWN_API_KEY``), extras the timeouts, batch limits and retry settings of
:class:`~airflow_batch_provider.hooks.settings.ApiSettings`.
"""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from functools import cached_property
from typing import IO, TYPE_CHECKING, Any, cast

import requests
from airflow.providers.http.hooks.http import HttpHook
from requests.exceptions import ChunkedEncodingError, ContentDecodingError

from airflow_batch_provider.hooks.batch_api_async import BatchApiAsyncHook  # public here too: both hooks, one module
from airflow_batch_provider.hooks.errors import (
    BatchApiAuthError,
    BatchApiBadRequestError,
    BatchApiConnectionError,
    BatchApiError,
    BatchRouterUnavailableError,
    SubmitOutcomeUnknownError,
    TransportError,
    TransportSetupError,
    error_for_status,
    redact,
    safe_url,
)
from airflow_batch_provider.hooks.retry import (
    is_retryable,
    parse_retry_after,
    pause_asked,
    retry_policy,
    transport_error,
)
from airflow_batch_provider.hooks.settings import DEFAULT_BASE_URL, ApiSettings, BatchLimits
from airflow_batch_provider.hooks.transport import TRANSPORT_EXTRAS
from airflow_batch_provider.protocol import (
    BATCHES_URL as BATCHES,
    BatchStatus,
    Classify,
    ClassifyResult,
    Extract,
    ExtractResult,
    InvalidRequestError,
    Label,
    OutputLine,
    Request,
    Result,
    Summarize,
    SummarizeResult,
    UnexpectedResponseError,
)
from airflow_batch_provider.protocol.output import OutputReader
from airflow_batch_provider.protocol.realtime import realtime_call, realtime_result

SPOOL_IN_MEMORY = 8 * 1024 * 1024


class BatchApiHook(HttpHook):
    """Submit batches, read their status and output, call the realtime endpoints.

    :param batch_api_conn_id: a ``batch_api`` connection (default ``batch_api_default``).
    """

    conn_name_attr = "batch_api_conn_id"
    default_conn_name = "batch_api_default"
    conn_type = "batch_api"
    hook_name = "ScaleDown Batch API"
    default_host = DEFAULT_BASE_URL

    def __init__(self, batch_api_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(method="GET", http_conn_id=batch_api_conn_id, **kwargs)
        self.batch_api_conn_id = batch_api_conn_id
        self.throttled = 0  # times the API said to slow down (429, Retry-After) on status and output reads
        # Told, with the seconds asked, each time the API asks to slow down: a wait's request budget.
        self.on_throttled: Callable[[float], None] | None = None
        # Each request tried once, for callers that retry by time (job/retry_by_time.py): a failed
        # request leaves its thread at once, instead of sleeping through its backoff there.
        self.one_attempt = False

    def __repr__(self) -> str:
        return f"{type(self).__name__}(batch_api_conn_id={self.batch_api_conn_id!r})"

    @cached_property
    def settings(self) -> ApiSettings:
        """The connection's settings (base URL, key, limits, retries, transport), read once per hook."""
        return ApiSettings.from_connection(self.get_connection(self.batch_api_conn_id))

    @cached_property
    def session(self) -> requests.Session:
        """One session for the hook's life (connections pooled and reused), made by ``HttpHook``,
        with the key as ``x-api-key``. CA bundle, client certificate and proxy are resolved by
        :class:`~airflow_batch_provider.hooks.transport.TransportSettings` and given per request,
        so requests does not read the environment again."""
        session = self.get_conn(headers={"x-api-key": self.settings.api_key})
        session.trust_env = False
        return session

    @cached_property
    def _transport(self) -> dict[str, Any]:
        # Every request goes to the one host of the base URL: its CA bundle and proxy, resolved once.
        return self.settings.transport.requests_options(self.settings.base_url)

    def _extract_auth(self, connection: Any) -> None:
        return None  # the key goes in x-api-key, never as basic auth (HttpHook's default for a login)

    def _set_base_url(self, connection: Any) -> None:
        try:
            super()._set_base_url(connection)
        except ValueError as exc:  # e.g. "Invalid IPv6 URL": a setting to fix, not a failure to retry
            raise TransportSetupError(f"the host of connection {connection.conn_id!r} is not a usable URL ({exc})",
                                      endpoint="") from None
        self.base_url = ApiSettings.base_url_of(connection)  # HttpHook assumes http://; we default to https
        self._srv_lookup_enabled = False  # SRV targets would get HttpHook's http:// and carry the key in clear

    def _configure_session_from_extra(self, session: requests.Session, connection: Any,
                                      extra_options: dict[str, Any]) -> requests.Session:
        # HttpHook sends every extra it does not know as a header; ours are settings, so it sees the
        # rest (the transport extras are applied per request, see session).
        return super()._configure_session_from_extra(session, _TransportExtras(connection), extra_options)

    # -- one exchange ----------------------------------------------------------------------------
    # Not HttpHook.run()/check_response(): they retry every failure alike, and a submit that may
    # have been received must not be sent again (hooks/retry.py decides, for both hooks).
    def _send(self, method: str, endpoint: str, *, stream: bool = False, **kwargs: Any) -> requests.Response:
        settings, session = self.settings, self.session
        # Errors are raised after the except blocks: raised inside, requests' exception (whose text
        # quotes the URL with its userinfo and query) would stay attached as __context__.
        failure: BatchApiError | InvalidRequestError | None = None
        try:
            # Redirects are not followed: requests would carry x-api-key to any host a 3xx names.
            url = self.url_from_endpoint(endpoint)
            response = session.request(
                method, url, stream=stream, allow_redirects=False,
                timeout=(settings.connect_timeout, settings.read_timeout), **self._transport, **kwargs)
        except requests.exceptions.InvalidHeader:  # its message would quote the header value
            failure = TransportSetupError("a request header could not be sent (its value is not shown); check "
                                          "the connection's extras", endpoint=f"{method} {endpoint}")
        except (requests.ConnectionError, requests.Timeout, ChunkedEncodingError, ContentDecodingError) as exc:
            failure = transport_error(exc, f"{method} {endpoint}", settings)
        except requests.exceptions.InvalidJSONError as exc:  # e.g. a realtime option of nan or a numpy integer
            failure = InvalidRequestError(f"the request to {method} {endpoint} cannot be sent as JSON "
                                          f"({type(exc.__cause__ or exc).__name__}); nothing was sent")
        except requests.RequestException as exc:  # an invalid URL, a missing schema: its text quotes the URL
            failure = TransportSetupError(f"the request to {settings.shown_url} could not be made "
                                          f"({type(exc).__name__}): check the connection's host",
                                          endpoint=f"{method} {endpoint}")
        if failure is not None:
            raise failure
        if response.status_code >= 300:
            body = (response.raw.read(2048, decode_content=True).decode(errors="replace") if stream
                    else response.text)
            response.close()
            raise error_for_status(
                response.status_code, response.reason or "request failed", body=body,
                endpoint=f"{method} {endpoint}", batch_api_conn_id=self.batch_api_conn_id,
                retry_after=parse_retry_after(response.headers.get("Retry-After")),
                location=response.headers.get("Location"), secrets=settings.secrets)
        return response

    def _note_failure(self, failure: BaseException) -> None:
        pause = pause_asked(failure, self.settings.retry_max_wait)
        if pause is not None:
            self.throttled += 1  # a wait's request budget reads it (job/polling.py)
            if self.on_throttled is not None:
                self.on_throttled(pause)

    @property
    def _attempts(self) -> int | None:
        return 1 if self.one_attempt else None  # None: the connection's retry_max_attempts

    def _json(self, method: str, endpoint: str, **kwargs: Any) -> Any:
        for attempt in retry_policy(self.settings, idempotent=True, log=self.log, what=f"{method} {endpoint}",
                                    on_failure=self._note_failure, attempts=self._attempts):
            with attempt:
                response = self._send(method, endpoint, **kwargs)
                failure: Exception
                try:
                    return response.json()
                except ChunkedEncodingError as exc:
                    failure = transport_error(exc, f"{method} {endpoint}", self.settings)
                except ValueError:
                    failure = UnexpectedResponseError(
                        f"{method} {endpoint} answered with a body that is not JSON: "
                        f"{redact(response.text[:200], self.settings.secrets)!r}")
                raise failure  # outside the except blocks: no __context__ (see _send)
        raise AssertionError("unreachable")  # tenacity either returns or raises

    # -- batch endpoints -------------------------------------------------------------------------
    def submit_batch(self, lines: Iterable[bytes], *, idempotency_key: str | None = None,
                     limits: BatchLimits | None = None) -> BatchStatus:
        """Submit JSONL request lines as one batch; the body is streamed, never built in memory.

        ``lines`` may be any iterable, even a one-shot generator: it is spooled to a temporary file
        (in memory up to 8 MB) so a retry can send the same bytes again. Submissions are retried
        when that is safe (see :mod:`~airflow_batch_provider.hooks.retry`); an ambiguous failure
        that may not be retried raises :class:`SubmitOutcomeUnknownError`. The same
        ``Idempotency-Key`` (given, or one per call) goes with every attempt. ``limits``: the job's
        batch limits (default: the connection's), checked here as a last guard.
        """
        settings = self.settings
        limits = limits or settings.batch_limits()
        key = idempotency_key or uuid.uuid4().hex
        with tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY) as body:
            items, size = self._spool(lines, body)
            if items == 0:
                raise BatchApiBadRequestError("nothing to submit: no request lines", endpoint=f"POST {BATCHES}")
            refusal = limits.refusal(items, size)
            if refusal:
                raise BatchApiBadRequestError(refusal, endpoint=f"POST {BATCHES}")
            headers = {"content-type": "application/jsonl", "Idempotency-Key": key}
            idempotent = settings.retry_ambiguous_submits
            try:
                for attempt in retry_policy(settings, idempotent=idempotent, log=self.log,
                                            what=f"submitting a batch of {items} requests",
                                            on_failure=self._note_failure, attempts=self._attempts):
                    with attempt:
                        body.seek(0)
                        response = self._send("POST", BATCHES, data=body, headers=headers)
                        status = BatchStatus.from_json(response.json())
            except BatchApiError as exc:
                if not is_retryable(exc, idempotent=True) or is_retryable(exc, idempotent=idempotent):
                    raise
                raise SubmitOutcomeUnknownError(
                    f"the submission of {items} requests failed after it was sent ({exc}); a batch may "
                    f"have been created (Idempotency-Key {key}). Not resubmitted, to avoid paying twice; "
                    "set retry_ambiguous_submits on the connection if the server honours Idempotency-Key",
                    status_code=exc.status_code, endpoint=f"POST {BATCHES}") from exc
        self.log.debug("Submitted batch %s: %d requests, %d bytes", status.batch_id, items, size)
        return status

    @staticmethod
    def _spool(lines: Iterable[bytes], body: IO[bytes]) -> tuple[int, int]:
        items = size = 0
        for line in lines:
            if not line.endswith(b"\n"):
                line += b"\n"
            body.write(line)
            items += 1
            size += len(line)
        return items, size

    def get_batch(self, batch_id: str) -> BatchStatus:
        """The batch's status, read from either documented shape."""
        return BatchStatus.from_json(self._json("GET", f"{BATCHES}/{batch_id}"))

    def iter_output(self, batch_id: str, *, expected_model: str | None = None) -> Iterator[OutputLine]:
        """Output lines of a completed batch, parsed, streamed a chunk at a time.

        If the stream breaks, the request is retried and lines already yielded are skipped, so
        every ``custom_id`` is yielded once.
        """
        endpoint = f"{BATCHES}/{batch_id}/output"
        reader = OutputReader(expected_model, self.settings.max_output_line_bytes)
        for attempt in retry_policy(self.settings, idempotent=True, log=self.log, what=f"GET {endpoint}",
                                    on_failure=self._note_failure,  # a load's downloads slow down together
                                    attempts=self._attempts):
            with attempt:
                with self._send("GET", endpoint, stream=True) as response:
                    broken: TransportError | None = None
                    try:
                        for chunk in response.iter_content(chunk_size=1 << 16):
                            yield from reader.feed(chunk)
                        yield from reader.close()
                    except (requests.ConnectionError, requests.Timeout, ChunkedEncodingError) as exc:
                        reader.restart()
                        broken = transport_error(exc, f"GET {endpoint}", self.settings)
                    if broken is not None:
                        raise broken  # outside the except block: no __context__ (see _send)
        self.log.debug("Read %d output lines of batch %s", reader.yielded, batch_id)

    # -- realtime endpoints ----------------------------------------------------------------------
    def _realtime(self, request: Request, text: str, **options: Any) -> Result:
        """One text, one result, in the shape the connection's server speaks (protocol/realtime.py). The
        request was built (so validated) before anything is sent."""
        legacy = self.settings.legacy_realtime_paths
        call = realtime_call(request, text, options, legacy=legacy)
        return realtime_result(request, self._json("POST", call.path, json=call.payload), legacy=legacy)

    def extract(self, text: str, entities: Mapping[str, str], instruction: str | None = None,
                **options: Any) -> ExtractResult:
        """Entities of ``text`` now; ``options`` are the API's ``threshold``, ``top_n``, ``context_chars``."""
        return cast(ExtractResult, self._realtime(Extract(entities, instruction), text, **options))

    def summarize(self, text: str, instructions: str | None = None, max_tokens: int | None = None) -> SummarizeResult:
        """A summary of ``text`` now."""
        return cast(SummarizeResult, self._realtime(Summarize(instructions, max_tokens), text))

    def classify(self, text: str, labels: Sequence[Label], system_prompt: str | None = None) -> ClassifyResult:
        """``text`` scored against each label's rubric now. The decisions endpoint takes no system
        prompt: one given is sent only on the older paths (``legacy_realtime_paths``)."""
        if system_prompt is not None and not self.settings.legacy_realtime_paths:
            self.log.warning("classify: the decisions endpoint (/v1/scaledown) has no system prompt, so it is not "
                             "sent; set the connection's legacy_realtime_paths to send it to /classify")
        return cast(ClassifyResult, self._realtime(Classify(labels, system_prompt), text))

    # -- connection test -------------------------------------------------------------------------
    def test_connection(self) -> tuple[bool, str]:
        """Prove the key works: ask for a batch that cannot exist; 404 means we were let in."""
        probe = f"connection-test-{uuid.uuid4().hex[:8]}"
        try:
            self._send("GET", f"{BATCHES}/{probe}")
        except BatchApiAuthError:
            return False, f"Wrong API key: {self.settings.shown_url} refused it (HTTP 401/403)."
        except BatchRouterUnavailableError:
            return False, f"{self.settings.shown_url} answered, but its batch router is not configured (HTTP 503)."
        except BatchApiConnectionError as exc:
            return False, f"Cannot reach {self.settings.shown_url}: {exc}"
        except BatchApiError as exc:
            if exc.status_code == 404:
                return True, f"Connected to {self.settings.shown_url}; the API key was accepted."
            return False, f"Unexpected answer from {self.settings.shown_url}: {exc}"
        except ValueError as exc:  # no key, bad extras (their messages hold no credential)
            return False, str(exc)
        return True, f"Connected to {self.settings.shown_url}; the API key was accepted."


class _TransportExtras:
    """A connection as HttpHook's session set-up should see it: its extras without our settings."""

    def __init__(self, connection: Any) -> None:
        self.host = safe_url(connection.host or "")  # HttpHook logs it when an extra is unusable
        self.extra_dejson = {k: v for k, v in connection.extra_dejson.items()
                             if k not in (*ApiSettings.extra_fields(), *TRANSPORT_EXTRAS)}


if TYPE_CHECKING:
    from airflow_batch_provider.hooks.thread_hooks import ThreadHooks as ThreadHooks
else:
    def __getattr__(name: str) -> Any:
        """``ThreadHooks`` stays importable from here, as before (it lives in .thread_hooks, which
        imports this module)."""
        if name == "ThreadHooks":
            from airflow_batch_provider.hooks.thread_hooks import ThreadHooks

            return ThreadHooks
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["BatchApiAsyncHook", "BatchApiHook"]
