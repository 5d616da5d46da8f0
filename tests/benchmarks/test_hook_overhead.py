"""Per-call overhead of both hooks against a bare requests/aiohttp call to the same emulator endpoint.

Run with `make benchmarks`; reported as ratios (hook time / bare time), measured in the same run.
"""

import asyncio
import time

import aiohttp
import pytest
import requests

from airflow_batch_provider.emulator.pytest_plugin import connection_json
from airflow_batch_provider.hooks.batch_api import BatchApiAsyncHook, BatchApiHook
from airflow_batch_provider.protocol import LineEncoder, Summarize

pytestmark = pytest.mark.benchmark
CALLS = 2000


def _per_call(fn, calls=CALLS):
    fn()  # warm: connection opened, connection looked up
    started = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - started) / calls


def test_hook_overhead_per_call(make_emulator, monkeypatch):
    server = make_emulator()
    monkeypatch.setenv("AIRFLOW_CONN_BATCH_API_DEFAULT", connection_json(server))
    hook = BatchApiHook()
    batch_id = hook.submit_batch([LineEncoder(Summarize()).encode("a", "Some text.")]).batch_id
    url = f"{server.url}/v1/batches/{batch_id}"
    session = requests.Session()
    session.headers["x-api-key"] = server.api_key

    bare_sync = _per_call(lambda: session.get(url).json())
    hook_sync = _per_call(lambda: hook.get_batch(batch_id))

    async def measure():
        async with aiohttp.ClientSession(headers={"x-api-key": server.api_key}) as client:
            async def bare():
                async with client.get(url) as response:
                    return await response.json()
            await bare()
            started = time.perf_counter()
            for _ in range(CALLS):
                await bare()
            bare_async = (time.perf_counter() - started) / CALLS
        async with BatchApiAsyncHook() as async_hook:
            await async_hook.get_batch(batch_id)
            started = time.perf_counter()
            for _ in range(CALLS):
                await async_hook.get_batch(batch_id)
            hook_async = (time.perf_counter() - started) / CALLS
        return bare_async, hook_async

    bare_async, hook_async = asyncio.run(measure())
    print(f"\nGET /v1/batches/{{id}} against the in-process emulator, {CALLS} calls each:"
          f"\n  requests.Session (baseline)  {bare_sync * 1e3:7.3f} ms/call"
          f"\n  BatchApiHook.get_batch       {hook_sync * 1e3:7.3f} ms/call  (ratio {hook_sync / bare_sync:.2f})"
          f"\n  aiohttp (baseline)           {bare_async * 1e3:7.3f} ms/call"
          f"\n  BatchApiAsyncHook.get_batch  {hook_async * 1e3:7.3f} ms/call  (ratio {hook_async / bare_async:.2f})")
