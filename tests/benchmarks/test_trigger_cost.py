"""What waiting costs: one BatchTrigger on 1 000 and 20 000 running batches, against a baseline
of one sync polling loop per batch (each polling every 5 s, as the API docs advise), in the same run.

The emulator runs as its own process with a start delay longer than the run, so every batch stays
running and its CPU is not counted here. Reported: CPU seconds of this process per wall second, and
status requests per minute. Run with `make benchmarks`.
"""

from __future__ import annotations

import asyncio
import heapq
import json
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from airflow_batch_provider.hooks.batch_api import BatchApiHook
from airflow_batch_provider.hooks.thread_hooks import ThreadHooks
from airflow_batch_provider.job.manifest import BatchRef, JobManifest, job_location, write_manifest
from airflow_batch_provider.triggers.batch import BatchTrigger

pytestmark = pytest.mark.benchmark
WINDOW = 20.0
LINE = b'{"custom_id":"x","method":"POST","url":"/v1/chat/completions","body":{"model":"summarize","text":"t"}}\n'


def make_job(hook, tmp_path, n):
    hooks = ThreadHooks("batch_api_default")  # a hook per thread: one per call would read the connection 20,000 times
    with ThreadPoolExecutor(16) as pool:
        ids = list(pool.map(lambda _: hooks.get().submit_batch([LINE]).batch_id, range(n)))
    hooks.close()
    manifest = JobManifest(job_id=f"bench-{n}", batch_api_conn_id="batch_api_default", model="summarize", request={},
                           id_column="id", id_type="string", input_fingerprint="-", total_rows=n,
                           invalid_rows=0, batches=[BatchRef(b, i, 1) for i, b in enumerate(ids)])
    location = job_location(tmp_path, manifest.job_id)
    write_manifest(location, manifest)
    return manifest.reference(str(location))


def measure(emulator, fn):
    requests_before = emulator.stats()["requests"].get("status", 0)
    cpu, wall = time.process_time(), time.monotonic()
    fn()
    cpu, wall = time.process_time() - cpu, time.monotonic() - wall
    polls = emulator.stats()["requests"].get("status", 0) - requests_before
    return cpu / wall, polls / wall * 60


def run_trigger(job):
    async def window():
        trigger = BatchTrigger(job=job, poll_interval=5, deadline=time.time() + WINDOW, requests_per_minute=600)
        async for _ in trigger.run():
            return
    asyncio.run(window())


def baseline_loops(batch_ids):
    """N loops, each polling its batch every 5 s. A pool of 32 threads sharing a due-time heap
    makes the same requests with less overhead than N threads, so the baseline is if anything
    flattered."""
    stop = time.monotonic() + WINDOW
    start = time.monotonic()
    due = [(start + (i % 50) / 10, b) for i, b in enumerate(batch_ids)]
    heapq.heapify(due)
    lock = threading.Lock()

    def worker():
        hook = BatchApiHook()
        while time.monotonic() < stop:
            with lock:
                when, batch_id = heapq.heappop(due)
                heapq.heappush(due, (when + 5, batch_id))
            wait = when - time.monotonic()
            if wait > 0:
                time.sleep(min(wait, stop - time.monotonic(), 1.0))
                if time.monotonic() >= stop:
                    return
            hook.get_batch(batch_id)

    threads = [threading.Thread(target=worker) for _ in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


@pytest.mark.parametrize("batches", [1000, 20000])
def test_waiting_cost(emulator_process, monkeypatch, tmp_path, batches):
    emulator = emulator_process("--start-delay", "100000")
    monkeypatch.setenv("AIRFLOW_CONN_BATCH_API_DEFAULT", json.dumps(
        {"conn_type": "batch_api", "host": emulator.url, "password": emulator.api_key}))
    job = make_job(BatchApiHook(), tmp_path, batches)
    trigger_cpu, trigger_rpm = measure(emulator, lambda: run_trigger(job))
    ids = [b["batch_id"] for b in json.loads((tmp_path / job["job_id"] / "manifest.json").read_text())["batches"]]
    base_cpu, base_rpm = measure(emulator, lambda: baseline_loops(ids))
    cores = os.cpu_count()
    print(f"\nwaiting on {batches} running batches for {WINDOW:.0f} s ({cores} cores):"
          f"\n  one sync loop per batch (baseline)  {base_cpu * 100:6.1f} % of a core  {base_rpm:10,.0f} requests/min"
          f"\n  one BatchTrigger                    {trigger_cpu * 100:6.1f} % of a core  {trigger_rpm:10,.0f} requests/min"
          f"\n  ratio trigger/baseline              CPU {trigger_cpu / base_cpu:.3f}   requests {trigger_rpm / base_rpm:.3f}")


def seconds_to_ask_about(batches: int, ceiling: float | None, start: float = 600) -> float:
    """Seconds the request budget needs to ask about ``batches`` finished batches once, if nothing
    throttles it: it starts at ``start`` a minute and, while the answers say "finished", runs
    one-second cycles one after another, doubling each (job/budget.py, job/polling.py), up to
    ``ceiling``. What the requests in flight allow (max_concurrency over the round trip) is not
    modelled: the ratio shows it."""
    rate, asked, seconds = start, 0.0, 0.0
    while asked < batches:
        asked += rate / 60
        seconds += 1
        rate = rate * 2 if ceiling is None else min(ceiling, rate * 2)
    return seconds


@pytest.mark.parametrize("requests_per_minute", [None, 60_000])
def test_time_to_notice_a_finished_job(emulator_process, monkeypatch, tmp_path, requests_per_minute):
    """20,000 batches that have all finished: how long until the trigger says so, with its defaults
    (poll_interval 5 s, max_concurrency 32, no ceiling: the budget grows from 600 a minute) and with a
    60,000 a minute ceiling, against the bound of two poll intervals plus the seconds the growing
    budget needs to ask about every batch."""
    emulator = emulator_process()
    monkeypatch.setenv("AIRFLOW_CONN_BATCH_API_DEFAULT", json.dumps(
        {"conn_type": "batch_api", "host": emulator.url, "password": emulator.api_key}))
    batches, interval = 20_000, 5.0  # the default poll_interval
    job = make_job(BatchApiHook(), tmp_path, batches)
    while emulator.stats().get("batches_completed", 0) < batches:
        time.sleep(0.5)

    async def wait():
        trigger = BatchTrigger(job=job, requests_per_minute=requests_per_minute)  # every other setting its default
        async for event in trigger.run():
            return event.payload

    started = time.monotonic()
    cpu = time.process_time()
    payload = asyncio.run(wait())
    took, cpu = time.monotonic() - started, time.process_time() - cpu
    bound = 2 * interval + seconds_to_ask_about(batches, requests_per_minute)
    assert payload["status"] == "success" and payload["batches_done"] == batches
    print(f"\n{batches} finished batches, ceiling {requests_per_minute or 'none'}/min, interval {interval:.0f} s: "
          f"noticed after {took:.1f} s (bound {bound:.1f} s, ratio {took / bound:.2f}); "
          f"{cpu / took * 100:.1f} % of a core")
