"""The emulator's own routes (``/_emulator/...``) that tests use: counts, faults, capacity, rate
limit. Faults and the rate limit never hit them."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool

from airflow_batch_provider.emulator.config import FaultSettings
from airflow_batch_provider.emulator.errors import ApiError
from airflow_batch_provider.emulator.state import EmulatorState, emulator, read_json

router = APIRouter(prefix="/_emulator")


@router.get("/stats")
async def stats(state: EmulatorState = Depends(emulator)) -> dict[str, Any]:
    """``GET /_emulator/stats``: what was stored, asked, faulted and rate-limited."""
    counts = await run_in_threadpool(state.store.counts)
    return {**counts, "requests": dict(state.faults.requests), "faults_injected": dict(state.faults.injected),
            "rate_limited": state.rate_limit.limited, "in_flight_peak": dict(state.faults.in_flight_peak)}


@router.put("/faults")
async def set_faults(request: Request, state: EmulatorState = Depends(emulator)) -> dict[str, Any]:
    """``POST /_emulator/faults``: the faults to inject from now on."""
    data = await read_json(request, state.config.max_body_bytes)
    try:
        state.faults.configure(FaultSettings(**data))
    except (TypeError, ValueError) as exc:
        raise ApiError(422, str(exc)) from None
    return asdict(state.faults.settings)


@router.put("/capacity")
async def set_capacity(request: Request, state: EmulatorState = Depends(emulator)) -> dict[str, Any]:
    """Change processing speed while running: ``{"items_per_second": 50, "start_delay": 0}``."""
    data = await read_json(request, state.config.max_body_bytes)
    unknown = set(data) - {"items_per_second", "start_delay"}
    if unknown:
        raise ApiError(422, f"unknown settings {sorted(unknown)}")
    for name, value in data.items():
        if isinstance(value, bool) or not (isinstance(value, (int, float)) or
                                           (value is None and name == "items_per_second")) or (value or 0) < 0:
            raise ApiError(422, f"{name} must be a number >= 0, got {value!r}")
    config = state.config
    for name, value in data.items():
        setattr(config, name, value)
    return {"items_per_second": config.items_per_second, "start_delay": config.start_delay}


@router.put("/rate-limit")
async def set_rate_limit(request: Request, state: EmulatorState = Depends(emulator)) -> dict[str, Any]:
    """Change the rate limit while running: ``{"per_minute": 6000}``, or ``{"per_minute": null}``."""
    data = await read_json(request, state.config.max_body_bytes)
    if set(data) != {"per_minute"}:
        raise ApiError(422, 'give exactly {"per_minute": <number > 0 or null>}')
    try:
        state.rate_limit.configure(data["per_minute"])
    except ValueError as exc:
        raise ApiError(422, str(exc)) from None
    return {"per_minute": state.rate_limit.per_minute}
