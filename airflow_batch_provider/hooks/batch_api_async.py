"""``BatchApiAsyncHook``: the asyncio twin of ``BatchApiHook`` for triggers, on ``HttpAsyncHook``.

One aiohttp session is reused across polls; the connection is looked up with the async API, so no
call blocks the triggerer's event loop. Same retry policy and typed errors as the sync hook.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from typing import Any

import aiohttp
from airflow.providers.common.compat.connection import get_async_connection
from airflow.providers.http.hooks.http import HttpAsyncHook

from airflow_batch_provider.hooks.errors import TransportError, TransportSetupError, error_for_status
from airflow_batch_provider.hooks.retry import (
    misconfigured,
    parse_retry_after,
    pause_asked,
    retry_policy,
)
from airflow_batch_provider.hooks.settings import ApiSettings
from airflow_batch_provider.hooks.transport import tls_setup_problem
from airflow_batch_provider.protocol import BATCHES_URL, BatchStatus, UnexpectedResponseError


def _transport_failure(exc: BaseException, settings: ApiSettings, url: str, what: str) -> Exception:
    """What a failed aiohttp request means, by cause, as the sync hook's ``transport_error`` says it:
    whether anything was sent, and whether a retry can help (a TLS or proxy set-up cannot)."""
    if isinstance(exc, aiohttp.ClientSSLError):  # while connecting: nothing was sent
        problem = tls_setup_problem(exc)
        return (misconfigured(settings, url, f"the TLS handshake failed ({problem})", what) if problem
                else TransportError(f"the TLS connection to {settings.shown_url} failed: {type(exc).__name__}",
                                    request_sent=False, endpoint=what))
    if isinstance(exc, aiohttp.ClientHttpProxyError):  # the proxy answered CONNECT with an error
        answer = f"{exc.status} {exc.message}"[:80]
        return (misconfigured(settings, url, f"the proxy refused ({answer})", what) if exc.status in (403, 407) else
                TransportError(f"the proxy for {settings.shown_url} failed: it answered {answer}",
                               request_sent=False, endpoint=what))
    if isinstance(exc, aiohttp.ClientProxyConnectionError):
        return TransportError(f"the proxy for {settings.shown_url} failed: it could not be reached",
                              request_sent=False, endpoint=what)
    if isinstance(exc, aiohttp.ClientConnectorError):  # connect failed: nothing was sent
        return TransportError(f"the request to {settings.shown_url} failed: {type(exc).__name__}",
                              request_sent=False, endpoint=what)
    if isinstance(exc, (aiohttp.InvalidURL, ValueError)):  # a host aiohttp cannot use: nothing was sent
        return TransportSetupError(f"the request to {settings.shown_url} could not be made: {type(exc).__name__}",
                                   endpoint=what)
    return TransportError(f"the request to {settings.shown_url} failed: {type(exc).__name__}",
                          request_sent=True, endpoint=what)


class BatchApiAsyncHook(HttpAsyncHook):
    """Use as ``async with BatchApiAsyncHook(batch_api_conn_id) as hook: await hook.get_batch(id)``."""

    conn_name_attr = "batch_api_conn_id"
    default_conn_name = "batch_api_default"
    conn_type = "batch_api"
    hook_name = "ScaleDown Batch API (async)"

    def __init__(self, batch_api_conn_id: str = default_conn_name) -> None:
        super().__init__(method="GET", http_conn_id=batch_api_conn_id, auth_type=None)
        self.batch_api_conn_id = batch_api_conn_id
        self._settings: ApiSettings | None = None
        self._client: aiohttp.ClientSession | None = None
        self._proxy: tuple[str | None, dict[str, str] | None] = (None, None)  # set with the client
        self.throttled = 0  # times the API said to slow down (429, Retry-After): a wait's budget reads it
        self._resume_at = 0.0  # monotonic time before which no request is sent: a 429 pauses them all
        # Told, with the seconds asked, each time the API asks to slow down: a wait's request budget.
        self.on_throttled: Callable[[float], None] | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(batch_api_conn_id={self.batch_api_conn_id!r})"

    async def settings(self) -> ApiSettings:
        """The connection's settings, looked up without blocking the event loop (once per hook)."""
        if self._settings is None:
            conn = await get_async_connection(self.batch_api_conn_id, hook=self)
            # On the loop, not in a thread: it registers secrets with the masker, which talks to the
            # triggerer's supervisor. Loading the CA bundle to check it blocks the loop once (~20 ms).
            self._settings = ApiSettings.from_connection(conn)
        return self._settings

    async def client(self) -> aiohttp.ClientSession:
        """The one aiohttp session of this hook, made on first use."""
        # Not HttpAsyncHook.session(): it sends every extra as a header (ours are settings), sets no
        # timeouts, ignores cert and trust_env, and lasts one context; a trigger keeps this one
        # session for all its polls. The CA bundle, client certificate and proxy are the ones the
        # sync hook uses (hooks/transport.py), so the environment is not read again (trust_env off).
        if self._client is None or self._client.closed:
            settings = await self.settings()
            ssl_context = await asyncio.to_thread(settings.transport.ssl_context)  # reads files: off the loop
            self._proxy = await asyncio.to_thread(settings.transport.aiohttp_proxy, settings.base_url)
            self._client = aiohttp.ClientSession(
                headers={"x-api-key": settings.api_key},
                timeout=aiohttp.ClientTimeout(sock_connect=settings.connect_timeout,
                                              sock_read=settings.read_timeout),
                connector=aiohttp.TCPConnector(ssl=ssl_context), trust_env=False,
            )
        return self._client

    def _note_failure(self, failure: BaseException) -> None:
        pause = pause_asked(failure, self._settings.retry_max_wait if self._settings else math.inf)
        if pause is not None:
            self.throttled += 1
            self._resume_at = max(self._resume_at, time.monotonic() + pause)
            if self.on_throttled is not None:
                self.on_throttled(pause)

    async def close(self) -> None:
        """Close the session; the hook may be used again, with a new one."""
        if self._client is not None:
            await self._client.close()
            self._client = None

    async def __aenter__(self) -> BatchApiAsyncHook:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _get_json(self, endpoint: str) -> Any:
        settings = await self.settings()
        client = await self.client()
        what = f"GET {endpoint}"
        url = settings.base_url + endpoint
        proxy, proxy_headers = self._proxy
        async for attempt in retry_policy(settings, idempotent=True, log=self.log, what=what,
                                          asynchronous=True, on_failure=self._note_failure):
            with attempt:
                # The requests of one wait share this hook: when the API asked one of them to slow
                # down, the others wait too, instead of each meeting its own 429.
                await asyncio.sleep(max(0.0, self._resume_at - time.monotonic()))
                # Messages name the redacted URL and the cause's type, never aiohttp's text (it quotes
                # the URL, userinfo and query included); and the error is raised after the except
                # blocks, so aiohttp's exception does not stay attached as __context__.
                failure: Exception
                try:
                    # Redirects are not followed: aiohttp would carry x-api-key to any host a 3xx names.
                    async with client.get(url, allow_redirects=False, proxy=proxy,
                                          proxy_headers=proxy_headers) as response:
                        if response.status >= 300:
                            raise error_for_status(
                                response.status, response.reason or "request failed",
                                body=(await response.text(errors="replace")), endpoint=what,
                                batch_api_conn_id=self.batch_api_conn_id, location=response.headers.get("Location"),
                                retry_after=parse_retry_after(response.headers.get("Retry-After")),
                                secrets=settings.secrets)
                        try:
                            return await response.json(content_type=None)
                        except ValueError:
                            failure = UnexpectedResponseError(f"{what} answered with a body that is not JSON")
                except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                    failure = _transport_failure(exc, settings, url, what)
                raise failure
        raise AssertionError("unreachable")

    async def get_batch(self, batch_id: str) -> BatchStatus:
        """The batch's status, read from either documented shape."""
        return BatchStatus.from_json(await self._get_json(f"{BATCHES_URL}/{batch_id}"))
