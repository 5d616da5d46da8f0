"""The realtime routes: one text in, one result out, computed by the same engines as batches."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool

from airflow_batch_provider.emulator import engines
from airflow_batch_provider.emulator.state import ApiError, EmulatorState, emulator, read_json

router = APIRouter()


async def _realtime(model: str, data: dict[str, Any], spelling: str = "text") -> dict[str, Any]:
    """The engine runs on a worker thread: CPU work on the event loop would stall every request."""
    try:
        return await run_in_threadpool(engines.run, {**data, "model": model}, entity_spelling=spelling)
    except engines.ItemFailure as exc:
        raise ApiError(422, exc.message) from None


@router.post("/extract")
async def extract(request: Request, state: EmulatorState = Depends(emulator)) -> dict[str, Any]:
    data = await read_json(request, state.config.max_body_bytes)
    result = await _realtime("extract", data)
    top_n = data.get("top_n") or 0
    threshold = data.get("threshold", 0.5)
    entities = [e for e in result["entities"] if e["confidence"] >= threshold]
    if top_n:
        entities = sorted(entities, key=lambda e: -e["confidence"])[:top_n]
    return {"entities": entities, "structured_result": None, "ocr_text": None}


@router.post("/summarization/abstractive")
async def summarization(request: Request, state: EmulatorState = Depends(emulator)) -> dict[str, Any]:
    started = time.perf_counter()
    result = await _realtime("summarize", await read_json(request, state.config.max_body_bytes))
    return {**result, "latency_ms": round((time.perf_counter() - started) * 1000, 3)}


@router.post("/classify")
async def classify(request: Request, state: EmulatorState = Depends(emulator)) -> dict[str, Any]:
    result = await _realtime("classify", await read_json(request, state.config.max_body_bytes))
    return {"top_label": result["top_label"], "scores": result["scores"], "labels": result["labels"]}
