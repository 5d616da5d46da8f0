"""The emulator's HTTP routes, answering as the ScaleDown API documents them (see docs/emulator.md).

Decisions where the spec leaves room: error bodies are ``{"detail": "..."}``; submit answers 200; an
unknown batch id is 404 in both versions, and so is output asked for before the batch completed;
``Idempotency-Key`` on submit returns the batch already created with that key (an emulator
extension the provider's hook uses for safe retries).
"""

from __future__ import annotations

import fcntl
import hashlib
import secrets
import tempfile
import time
import uuid
from contextlib import asynccontextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

import msgspec
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from airflow_batch_provider.emulator import engines
from airflow_batch_provider.emulator.config import EmulatorConfig, FaultSettings
from airflow_batch_provider.emulator.faults import FaultInjector, FaultState
from airflow_batch_provider.emulator.store import BatchRow, BatchStore
from airflow_batch_provider.emulator.worker import Processor, chance
from airflow_batch_provider.protocol import BATCHES_URL, MODELS, LineDecoder, LineSplitter, MalformedLineError

INSERT_EVERY = 2000


class ApiError(Exception):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def _v1(row: BatchRow) -> dict[str, Any]:
    return {"batch_id": row.id, "status": row.state, "total_count": row.total,
            "completed_count": row.completed, "failed_count": row.failed}


_V2_STATUS = {"queued": "validating", "processing": "in_progress", "completed": "completed",
              "failed": "failed"}


def _v2(row: BatchRow) -> dict[str, Any]:
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


def _lock_data_dir(data_dir: Path):
    """One emulator per data directory: two would process the same batches twice."""
    handle = open(data_dir / "emulator.lock", "w")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise RuntimeError(f"another emulator is using {data_dir}; stop it or choose another --data-dir") from None
    return handle


def create_app(config: EmulatorConfig) -> FastAPI:
    tmp = None
    if config.data_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="scaledown-emulator-")
        data_dir = Path(tmp.name)
    else:
        data_dir = Path(config.data_dir)
        data_dir.mkdir(parents=True, exist_ok=True)
    lock = _lock_data_dir(data_dir)
    store = BatchStore(data_dir / "batches.sqlite3")
    processor = Processor(store, config)
    shape = _v1 if config.api_version == 1 else _v2
    id_prefix = "batch-" if config.api_version == 1 else "batch_"

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        processor.start()
        try:
            yield
        finally:
            await run_in_threadpool(processor.stop)
            lock.close()
            if tmp is not None:
                tmp.cleanup()

    app = FastAPI(title="ScaleDown Batch API emulator", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.config = config
    app.state.store = store

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse({"detail": exc.detail}, status_code=exc.status)

    faults = FaultState(config.faults)
    app.state.faults = faults

    @app.middleware("http")
    async def _auth(request: Request, call_next):
        given = request.headers.get("x-api-key")
        if not given or not secrets.compare_digest(given.encode(), config.api_key.encode()):
            return JSONResponse({"detail": "missing or invalid x-api-key"}, status_code=401)
        return await call_next(request)

    def _visible(batch_id: str) -> BatchRow:
        if not config.router:
            raise ApiError(503, "batch router is not configured")
        row = store.get(batch_id)
        if row is None:
            raise ApiError(404, f"batch {batch_id} not found")
        return row

    @app.post(BATCHES_URL)
    async def submit(request: Request) -> dict[str, Any]:
        if not config.router:
            raise ApiError(503, "batch router is not configured")
        key = None if config.ignore_idempotency_key else request.headers.get("idempotency-key")
        if key:
            existing = await run_in_threadpool(store.find_by_idempotency_key, key)
            if existing is not None:
                if existing.state == "receiving":
                    raise ApiError(409, f"a submission with Idempotency-Key {key!r} is still uploading")
                digest = hashlib.sha256()
                async for chunk in _capped(request):
                    digest.update(chunk)
                if existing.body_sha256 and digest.hexdigest() != existing.body_sha256:
                    raise ApiError(422, f"Idempotency-Key {key!r} was used before with a different body")
                return shape(existing)
        batch_id = id_prefix + uuid.uuid4().hex[:24]
        await run_in_threadpool(store.begin_batch, batch_id, time.time(), key or None)
        try:
            total, body_sha256 = await _receive(request, batch_id)
        except BaseException:
            await run_in_threadpool(store.discard_batch, batch_id)
            raise
        await run_in_threadpool(store.seal_batch, batch_id, total, body_sha256)
        return shape(store.get(batch_id))

    async def _capped(request: Request):
        """The body's chunks; 413 once it grows past ``max_body_bytes``."""
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > config.max_body_bytes:
                raise ApiError(413, f"the request body is larger than {config.max_body_bytes} bytes")
            yield chunk

    async def _receive(request: Request, batch_id: str) -> tuple[int, str]:
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

        async for chunk in _capped(request):
            digest.update(chunk)
            await take(splitter.feed(chunk))
        await take(splitter.close())
        if pending:
            await run_in_threadpool(store.add_items, batch_id, total, pending)
            total += len(pending)
        if total == 0:
            raise ApiError(400, "the body holds no requests (one JSON request per line)")
        return total, digest.hexdigest()

    @app.get(BATCHES_URL + "/{batch_id}")
    async def status(batch_id: str) -> dict[str, Any]:
        return shape(await run_in_threadpool(_visible, batch_id))

    @app.get(BATCHES_URL + "/{batch_id}/output")
    async def output(batch_id: str) -> Response:
        row = await run_in_threadpool(_visible, batch_id)
        if row.state == "failed":
            raise ApiError(404, f"batch {batch_id} failed; it has no output")
        if row.state != "completed":
            raise ApiError(404, f"output of batch {batch_id} is not ready (status {row.state})")
        pages = store.iter_output(batch_id)
        if config.output_drop_rate or config.output_duplicate_rate:
            pages = _misbehave(pages)
        return StreamingResponse(pages, media_type="application/jsonl")

    def _misbehave(pages):
        """Output faults, deterministic per custom_id: lines dropped or sent twice."""
        for page in pages:
            kept = []
            for line in page.splitlines(keepends=True):
                custom_id = msgspec.json.decode(line)["custom_id"]
                if chance(custom_id, "drop") < config.output_drop_rate:
                    continue
                kept.append(line)
                if chance(custom_id, "dup") < config.output_duplicate_rate:
                    kept.append(line)
            yield b"".join(kept)

    async def _json(request: Request) -> dict[str, Any]:
        body = b"".join([chunk async for chunk in _capped(request)])
        try:
            data = msgspec.json.decode(body)
        except (msgspec.DecodeError, UnicodeDecodeError, RecursionError, ValueError) as exc:
            raise ApiError(400, f"malformed JSON: {type(exc).__name__}: {str(exc)[:200]}") from None
        if not isinstance(data, dict):
            raise ApiError(400, "the body must be a JSON object")
        return data

    async def _realtime(model: str, data: dict[str, Any], spelling: str = "text") -> dict[str, Any]:
        """The engine runs on a worker thread: CPU work on the event loop would stall every request."""
        try:
            return await run_in_threadpool(engines.run, {**data, "model": model}, entity_spelling=spelling)
        except engines.ItemFailure as exc:
            raise ApiError(422, exc.message) from None

    @app.post("/extract")
    async def extract(request: Request) -> dict[str, Any]:
        data = await _json(request)
        result = await _realtime("extract", data)
        top_n = data.get("top_n") or 0
        threshold = data.get("threshold", 0.5)
        entities = [e for e in result["entities"] if e["confidence"] >= threshold]
        if top_n:
            entities = sorted(entities, key=lambda e: -e["confidence"])[:top_n]
        return {"entities": entities, "structured_result": None, "ocr_text": None}

    @app.post("/summarization/abstractive")
    async def summarization(request: Request) -> dict[str, Any]:
        started = time.perf_counter()
        result = await _realtime("summarize", await _json(request))
        return {**result, "latency_ms": round((time.perf_counter() - started) * 1000, 3)}

    @app.post("/classify")
    async def classify(request: Request) -> dict[str, Any]:
        result = await _realtime("classify", await _json(request))
        return {"top_label": result["top_label"], "scores": result["scores"], "labels": result["labels"]}

    @app.get("/_emulator/stats")
    async def stats() -> dict[str, Any]:
        counts = await run_in_threadpool(store.counts)
        return {**counts, "requests": dict(faults.requests), "faults_injected": dict(faults.injected)}

    @app.put("/_emulator/faults")
    async def set_faults(request: Request) -> dict[str, Any]:
        data = await _json(request)
        try:
            faults.configure(FaultSettings(**data))
        except (TypeError, ValueError) as exc:
            raise ApiError(422, str(exc)) from None
        return asdict(faults.settings)

    @app.put("/_emulator/capacity")
    async def set_capacity(request: Request) -> dict[str, Any]:
        """Change processing speed while running: ``{"items_per_second": 50, "start_delay": 0}``."""
        data = await _json(request)
        unknown = set(data) - {"items_per_second", "start_delay"}
        if unknown:
            raise ApiError(422, f"unknown settings {sorted(unknown)}")
        for name, value in data.items():
            if isinstance(value, bool) or not (isinstance(value, (int, float)) or
                                               (value is None and name == "items_per_second")) or (value or 0) < 0:
                raise ApiError(422, f"{name} must be a number >= 0, got {value!r}")
        for name, value in data.items():
            setattr(config, name, value)
        return {"items_per_second": config.items_per_second, "start_delay": config.start_delay}

    app.add_middleware(FaultInjector, state=faults, api_key=config.api_key, latency=config.latency,
                       jitter=config.latency_jitter)  # added last, so it runs first
    return app
