"""Fault injection as ASGI middleware, so reliability tests need no HTTP mocking.

Faults hit only API routes, never ``/_emulator/*`` (the control routes tests use to count batches and
switch faults on and off). Every injected fault is counted by kind and route.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import random
from collections import Counter

from airflow_batch_provider.emulator.config import FaultSettings
from airflow_batch_provider.emulator.rate_limit import RateLimit
from airflow_batch_provider.protocol import BATCHES_URL
from airflow_batch_provider.protocol.realtime import REALTIME_PATHS

_UNCOMPLETED = "ASGI callable returned without completing response."


class _DropResetNoise(logging.Filter):
    """uvicorn logs an error when a response is cut short; for injected resets that is the point."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != _UNCOMPLETED


def route_of(method: str, path: str) -> str | None:
    """The fault route a request belongs to (submit, status, output, realtime), or None."""
    if path.startswith("/_emulator"):
        return None
    if path.rstrip("/") == BATCHES_URL:
        return "submit" if method == "POST" else None
    if path.startswith(BATCHES_URL + "/"):
        return "output" if path.rstrip("/").endswith("/output") else "status"
    if path in REALTIME_PATHS:
        return "realtime"
    return None


class FaultState:
    """What to inject and what was injected; shared by the middleware and the control routes."""

    def __init__(self, settings: FaultSettings) -> None:
        self.requests: Counter[str] = Counter()
        self.injected: Counter[str] = Counter()
        self.in_flight: Counter[str] = Counter()
        self.in_flight_peak: Counter[str] = Counter()  # requests a route answered at once, at most
        self.configure(settings)

    def configure(self, settings: FaultSettings) -> None:
        """Use these fault settings from now on, with a fresh random draw."""
        self.settings = settings
        self.random = random.Random(settings.seed)
        self.passed: Counter[str] = Counter()
        self.drawn = 0

    def draw(self, route: str | None) -> str | None:
        """The fault to inject into this request, if any."""
        settings = self.settings
        if route is None or route not in settings.routes or not settings.kinds:
            return None
        self.passed[route] += 1
        if self.passed[route] <= settings.skip_first:
            return None
        if settings.max_faults is not None and self.drawn >= settings.max_faults:
            return None
        if settings.rate <= 0 or self.random.random() >= settings.rate:
            return None
        self.drawn += 1
        return self.random.choice(settings.kinds)


class FaultInjector:
    """Counts every API request, answers 429 beyond the rate limit, and injects faults into those
    that carry the right key: a wrong key is answered 401 by the app, never with a fault or a 429
    (either would hide the real problem)."""

    def __init__(self, app, state: FaultState, rate_limit: RateLimit, api_key: str, latency: float = 0.0,
                 jitter: float = 0.0) -> None:
        self.app = app
        self.state = state
        self.rate_limit = rate_limit
        self.api_key = api_key.encode()
        self.latency = latency
        self.jitter = jitter
        self._random = random.Random()
        logging.getLogger("uvicorn.error").addFilter(_DropResetNoise())

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        route = route_of(scope["method"], scope["path"])
        if route is None:
            await self._answer(route, scope, receive, send)
            return
        self.state.requests[route] += 1
        self.state.in_flight[route] += 1  # how concurrent the client is, per route
        self.state.in_flight_peak[route] = max(self.state.in_flight_peak[route], self.state.in_flight[route])
        try:
            if self.latency or self.jitter:  # a network round trip: awaited, so other requests go on
                await asyncio.sleep(self.latency + self._random.uniform(0.0, self.jitter))
            await self._answer(route, scope, receive, send)
        finally:
            self.state.in_flight[route] -= 1

    async def _answer(self, route: str | None, scope, receive, send) -> None:
        given = dict(scope["headers"]).get(b"x-api-key", b"")
        keyed = route is not None and hmac.compare_digest(given, self.api_key)
        wait = self.rate_limit.take() if keyed else None
        if wait is not None:
            await _error(send, 429, wait, scope["path"],
                         detail=f"rate limit exceeded: {self.rate_limit.per_minute:g} requests per minute")
            return
        kind = self.state.draw(route) if keyed else None
        if kind is None:
            await self.app(scope, receive, send)
            return
        self.state.injected[f"{route}:{kind}"] += 1
        if kind == "slow":
            await asyncio.sleep(self.state.settings.slow_seconds)
            await self.app(scope, receive, send)
        elif kind == "reset":
            await _cut_connection(send)
        elif kind == "reset_after":
            await self.app(scope, receive, _swallow_then_cut(send))
        else:
            await _error(send, int(kind), self.state.settings.retry_after, scope["path"])


async def _error(send, status: int, retry_after: float, path: str, detail: str | None = None) -> None:
    body = json.dumps({"detail": detail or f"injected fault: HTTP {status}"}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if status in (429, 503):  # both say "come back later"; real servers send it with either
        headers.append((b"retry-after", str(max(0, round(retry_after))).encode()))
    if 300 <= status < 400:  # another origin, as a moved API would name
        headers.append((b"location", f"https://elsewhere.invalid{path}".encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _cut_connection(send) -> None:
    """Announce a body, send none, and return: the server closes the connection mid-response."""
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"4096")]})


def _swallow_then_cut(send):
    """Let the app do its work, then cut the connection instead of delivering its answer."""
    started = False

    async def wrapped(message) -> None:
        nonlocal started
        if not started:
            started = True
            await _cut_connection(send)

    return wrapped
