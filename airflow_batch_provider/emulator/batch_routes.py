"""The batch routes: submit (streamed into the store), status in either documented shape, output."""

from __future__ import annotations

import hashlib
import time
import uuid
from typing import Any

import msgspec
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from airflow_batch_provider.emulator.errors import ApiError
from airflow_batch_provider.emulator.state import EmulatorState, capped, emulator
from airflow_batch_provider.emulator.store import BatchRow
from airflow_batch_provider.emulator.worker import chance
from airflow_batch_provider.protocol import BATCHES_URL, MODELS, LineDecoder, LineSplitter, MalformedLineError

INSERT_EVERY = 2000
router = APIRouter()


def v1_shape(row: BatchRow) -> dict[str, Any]:
    """A batch as API version 1 answers it."""
    return {"batch_id": row.id, "status": row.state, "total_count": row.total,
            "completed_count": row.completed, "failed_count": row.failed}


_V2_STATUS = {"queued": "validating", "processing": "in_progress", "completed": "completed",
              "failed": "failed"}


def v2_shape(row: BatchRow) -> dict[str, Any]:
    """A batch as API version 2 (OpenAI-style) answers it."""
    return {
        "id": row.id, "object": "batch", "endpoint": "/v1/chat/completions", "input_file_id": None,
        "completion_window": "24h", "status": _V2_STATUS[row.state],
        "output_file_id": f"{row.id}_output" if row.state == "completed" else None,
        "error_file_id": None, "created_at": int(row.created_at),
        "request_counts": {"total": row.total, "completed": row.completed, "failed": row.failed},
        "metadata": None,
    }


def _check_line(decoder: LineDecoder, raw: bytes, custom_ids: set[str]) -> bytes | None:
    """The line to store, None for a blank line; ApiError(400) for what rejects the submission."""
    try:
        obj = decoder.decode(raw)
    except MalformedLineError as exc:
        raise ApiError(400, str(exc)) from None
    if obj is None:
        return None
    line = decoder.line_number
    custom_id = obj.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id:
        raise ApiError(400, f"line {line}: custom_id must be a non-empty string")
    if custom_id in custom_ids:
        raise ApiError(400, f"line {line}: custom_id {custom_id!r} appears twice in this batch")
    custom_ids.add(custom_id)
    body = obj.get("body")
    if not isinstance(body, dict):
        raise ApiError(400, f"line {line} ({custom_id}): body must be an object")
    if body.get("model") not in MODELS:
        raise ApiError(400, f"line {line} ({custom_id}): invalid model {body.get('model')!r}; "
                            f"expected one of {', '.join(MODELS)}")
    return raw.strip()


def _router_ready(state: EmulatorState) -> None:
    if not state.config.router:
        raise ApiError(503, "batch router is not configured")


def _visible(state: EmulatorState, batch_id: str) -> BatchRow:
    _router_ready(state)
    row = state.store.get(batch_id)
    if row is None:
        raise ApiError(404, f"batch {batch_id} not found")
    return row


@router.post(BATCHES_URL)
async def submit(request: Request, state: EmulatorState = Depends(emulator)) -> dict[str, Any]:
    """``POST /v1/batches``: store a JSONL body as a batch (or return the batch its Idempotency-Key made)."""
    _router_ready(state)
    store, config = state.store, state.config
    key = None if config.ignore_idempotency_key else request.headers.get("idempotency-key")
    if key:
        existing = await run_in_threadpool(store.find_by_idempotency_key, key)
        if existing is not None:
            if existing.state == "receiving":
                raise ApiError(409, f"a submission with Idempotency-Key {key!r} is still uploading")
            digest = hashlib.sha256()
            async for chunk in capped(request, config.max_body_bytes):
                digest.update(chunk)
            if existing.body_sha256 and digest.hexdigest() != existing.body_sha256:
                raise ApiError(422, f"Idempotency-Key {key!r} was used before with a different body")
            return state.shape(existing)
    batch_id = state.id_prefix + uuid.uuid4().hex[:24]
    await run_in_threadpool(store.begin_batch, batch_id, time.time(), key or None)
    try:
        total, body_sha256 = await _receive(state, request, batch_id)
    except BaseException:
        await run_in_threadpool(store.discard_batch, batch_id)
        raise
    await run_in_threadpool(store.seal_batch, batch_id, total, body_sha256)
    sealed = store.get(batch_id)
    assert sealed is not None  # sealed just now; batches are never deleted
    return state.shape(sealed)


async def _receive(state: EmulatorState, request: Request, batch_id: str) -> tuple[int, str]:
    """Checks every line as it streams in, storing them in groups; returns (items, body SHA-256)."""
    store, config = state.store, state.config
    splitter, decoder = LineSplitter(), LineDecoder()
    pending: list[bytes] = []
    total = 0
    custom_ids: set[str] = set()
    digest = hashlib.sha256()

    async def take(raw_lines: list[bytes]) -> None:
        nonlocal total, pending
        for raw in raw_lines:
            line = _check_line(decoder, raw, custom_ids)
            if line is None:
                continue
            pending.append(line)
            if config.max_batch_items and total + len(pending) > config.max_batch_items:
                raise ApiError(400, f"a batch holds at most {config.max_batch_items} requests")
        if len(pending) >= INSERT_EVERY:
            await run_in_threadpool(store.add_items, batch_id, total, pending)
            total, pending = total + len(pending), []

    async for chunk in capped(request, config.max_body_bytes):
        digest.update(chunk)
        await take(splitter.feed(chunk))
    await take(splitter.close())
    if pending:
        await run_in_threadpool(store.add_items, batch_id, total, pending)
        total += len(pending)
    if total == 0:
        raise ApiError(400, "the body holds no requests (one JSON request per line)")
    return total, digest.hexdigest()


@router.get(BATCHES_URL + "/{batch_id}")
async def status(batch_id: str, state: EmulatorState = Depends(emulator)) -> dict[str, Any]:
    """``GET /v1/batches/{id}``: the batch's status."""
    return state.shape(await run_in_threadpool(_visible, state, batch_id))


@router.get(BATCHES_URL + "/{batch_id}/output")
async def output(batch_id: str, state: EmulatorState = Depends(emulator)) -> Response:
    """``GET /v1/batches/{id}/output``: a completed batch's output lines, streamed."""
    row = await run_in_threadpool(_visible, state, batch_id)
    if row.state == "failed":
        raise ApiError(404, f"batch {batch_id} failed; it has no output")
    if row.state != "completed":
        raise ApiError(404, f"output of batch {batch_id} is not ready (status {row.state})")
    pages = state.store.iter_output(batch_id)
    if state.config.output_drop_rate or state.config.output_duplicate_rate:
        pages = _misbehave(state, pages)
    return StreamingResponse(pages, media_type="application/jsonl")


def _misbehave(state: EmulatorState, pages):
    """Output faults, deterministic per custom_id: lines dropped or sent twice."""
    for page in pages:
        kept = []
        for line in page.splitlines(keepends=True):
            custom_id = msgspec.json.decode(line)["custom_id"]
            if chance(custom_id, "drop") < state.config.output_drop_rate:
                continue
            kept.append(line)
            if chance(custom_id, "dup") < state.config.output_duplicate_rate:
                kept.append(line)
        yield b"".join(kept)
