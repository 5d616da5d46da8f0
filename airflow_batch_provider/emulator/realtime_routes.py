"""The realtime routes: one text in, one result out, computed by the same engines as batches.

Both shapes of protocol/realtime.py: today's (``/v1/chat/completions`` for summarize and extract,
the decisions endpoint ``/v1/scaledown`` for classify) and the older one path per model.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool

from airflow_batch_provider.emulator import engines
from airflow_batch_provider.emulator.errors import ApiError
from airflow_batch_provider.emulator.state import EmulatorState, emulator, read_json
from airflow_batch_provider.protocol import CHAT_COMPLETIONS_URL, InvalidRequestError
from airflow_batch_provider.protocol.realtime import (
    DECISIONS_URL,
    bodies_from_decision,
    body_from_chat,
    decision_answer,
)
from airflow_batch_provider.protocol.results import completion_body

router = APIRouter()


async def _realtime(model: str, data: dict[str, Any], spelling: str = "text") -> dict[str, Any]:
    """The engine runs on a worker thread: CPU work on the event loop would stall every request."""
    try:
        return await run_in_threadpool(engines.run, {**data, "model": model}, entity_spelling=spelling)
    except engines.ItemFailure as exc:
        raise ApiError(422, exc.message) from None


def _unreadable(exc: InvalidRequestError) -> ApiError:
    return ApiError(422, str(exc))


async def _extracted(data: dict[str, Any]) -> dict[str, Any]:
    """Extract's realtime answer in both shapes: entities at or above ``threshold``, the ``top_n`` best."""
    top_n = data.get("top_n") or 0
    threshold = data.get("threshold", 0.5)
    if not isinstance(top_n, int) or isinstance(top_n, bool) or not isinstance(threshold, (int, float)):
        raise ApiError(422, "top_n must be an integer and threshold a number")
    result = await _realtime("extract", data)
    entities = [e for e in result["entities"] if e["confidence"] >= threshold]
    if top_n:
        entities = sorted(entities, key=lambda e: -e["confidence"])[:top_n]
    return {"entities": entities, "structured_result": None, "ocr_text": None}


@router.post(CHAT_COMPLETIONS_URL)
async def chat_completions(request: Request, state: EmulatorState = Depends(emulator)) -> dict[str, Any]:
    """``POST /v1/chat/completions``: a summarize or extract result, as today's API answers it."""
    started = time.perf_counter()
    try:
        data = body_from_chat(await read_json(request, state.config.max_body_bytes))
    except InvalidRequestError as exc:
        raise _unreadable(exc) from None
    model = data.get("model")
    if model == "extract":
        content = await _extracted(data)
    elif model == "summarize":
        content = {**await _realtime("summarize", data), "latency_ms": round((time.perf_counter() - started) * 1000, 3)}
    else:  # batches classify through this path too; the published client uses the decisions endpoint
        content = await _realtime(str(model), data)
    return completion_body(model, content, f"chatcmpl-{uuid.uuid4().hex[:24]}")


@router.post(DECISIONS_URL)
async def decisions(request: Request, state: EmulatorState = Depends(emulator)) -> dict[str, Any]:
    """``POST /v1/scaledown``: a classify-1 decision per question."""
    try:
        bodies = bodies_from_decision(await read_json(request, state.config.max_body_bytes))
    except InvalidRequestError as exc:
        raise _unreadable(exc) from None
    return {"answers": {name: decision_answer(await _realtime("classify", body)) for name, body in bodies.items()}}


@router.post("/extract")
async def extract(request: Request, state: EmulatorState = Depends(emulator)) -> dict[str, Any]:
    """``POST /extract``: the older realtime shape."""
    return await _extracted(await read_json(request, state.config.max_body_bytes))


@router.post("/summarization/abstractive")
async def summarization(request: Request, state: EmulatorState = Depends(emulator)) -> dict[str, Any]:
    """``POST /summarization/abstractive``: the older realtime shape."""
    started = time.perf_counter()
    result = await _realtime("summarize", await read_json(request, state.config.max_body_bytes))
    return {**result, "latency_ms": round((time.perf_counter() - started) * 1000, 3)}


@router.post("/classify")
async def classify(request: Request, state: EmulatorState = Depends(emulator)) -> dict[str, Any]:
    """``POST /classify``: the older realtime shape."""
    result = await _realtime("classify", await read_json(request, state.config.max_body_bytes))
    return {"top_label": result["top_label"], "scores": result["scores"], "labels": result["labels"]}
