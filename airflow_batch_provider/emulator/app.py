"""The emulator's FastAPI app, answering as the ScaleDown API documents it (see docs/emulator.md).

Decisions where the API's documentation leaves room: error bodies are ``{"detail": "..."}``; submit
answers 200; an unknown batch id is 404 in both versions, and so is output asked for before the
batch completed; ``Idempotency-Key`` on submit returns the batch already created with that key (an
emulator extension the provider's hook uses for safe retries).

The routes live in three routers (:mod:`.batch_routes`, :mod:`.realtime_routes`,
:mod:`.control_routes`) and reach the shared state through the :func:`.state.emulator` dependency;
this module assembles them with the key check and the fault injector.
"""

from __future__ import annotations

import fcntl
import secrets
import tempfile
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from airflow_batch_provider.emulator import batch_routes, control_routes, realtime_routes
from airflow_batch_provider.emulator.config import EmulatorConfig
from airflow_batch_provider.emulator.errors import ApiError
from airflow_batch_provider.emulator.faults import FaultInjector, FaultState
from airflow_batch_provider.emulator.rate_limit import RateLimit
from airflow_batch_provider.emulator.state import EmulatorState
from airflow_batch_provider.emulator.store import BatchStore
from airflow_batch_provider.emulator.worker import Processor


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
    """The emulator's FastAPI app: its store, processor, faults, rate limit and routes."""
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
    faults = FaultState(config.faults)
    rate_limit = RateLimit(config.rate_limit_per_minute)

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
    v1 = config.api_version == 1
    app.state.emulator = EmulatorState(config=config, store=store, faults=faults, rate_limit=rate_limit,
                                       shape=batch_routes.v1_shape if v1 else batch_routes.v2_shape,
                                       id_prefix="batch-" if v1 else "batch_")

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse({"detail": exc.detail}, status_code=exc.status)

    @app.middleware("http")
    async def _auth(request: Request, call_next):
        given = request.headers.get("x-api-key")
        if not given or not secrets.compare_digest(given.encode(), config.api_key.encode()):
            return JSONResponse({"detail": "missing or invalid x-api-key"}, status_code=401)
        return await call_next(request)

    for routes in (batch_routes, realtime_routes, control_routes):
        app.include_router(routes.router)
    app.add_middleware(FaultInjector, state=faults, rate_limit=rate_limit, api_key=config.api_key,
                       latency=config.latency, jitter=config.latency_jitter)  # added last, so it runs first
    return app
