"""What every route of the emulator shares: its settings, store and fault state, and the reading of
request bodies within the size limit."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import msgspec
from fastapi import Request

from airflow_batch_provider.emulator.config import EmulatorConfig
from airflow_batch_provider.emulator.errors import (
    ApiError as ApiError,
)
from airflow_batch_provider.emulator.faults import FaultState
from airflow_batch_provider.emulator.rate_limit import RateLimit
from airflow_batch_provider.emulator.store import BatchRow, BatchStore


@dataclass
class EmulatorState:
    """What every route shares: configuration, store, faults, rate limit, the answer shape."""
    config: EmulatorConfig
    store: BatchStore
    faults: FaultState
    rate_limit: RateLimit
    shape: Callable[[BatchRow], dict[str, Any]]  # a batch as the API version answers it
    id_prefix: str


def emulator(request: Request) -> EmulatorState:
    """The FastAPI dependency every route takes."""
    return request.app.state.emulator


async def capped(request: Request, limit: int) -> AsyncIterator[bytes]:
    """The body's chunks; 413 once it grows past ``limit`` bytes."""
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, f"the request body is larger than {limit} bytes")
        yield chunk


async def read_json(request: Request, limit: int) -> dict[str, Any]:
    """A request's JSON object, read within ``limit`` bytes; 400 or 413 otherwise."""
    body = b"".join([chunk async for chunk in capped(request, limit)])
    try:
        data = msgspec.json.decode(body)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError, ValueError) as exc:
        raise ApiError(400, f"malformed JSON: {type(exc).__name__}: {str(exc)[:200]}") from None
    if not isinstance(data, dict):
        raise ApiError(400, "the body must be a JSON object")
    return data
