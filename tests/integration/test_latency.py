"""A real network's round trip, modelled by the emulator's latency knob: requests wait side by side,
and the load fetches batches concurrently, within a bounded number in memory."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pandas as pd
import requests

from airflow_batch_provider.job import reconcile
from tests.integration.test_load_operators import load, submit

LATENCY = 0.05


def test_latency_delays_every_answer_without_blocking_the_server(make_emulator):
    server = make_emulator(latency=0.2)
    headers = {"x-api-key": server.api_key}

    def one(_):
        return requests.get(server.url + "/v1/batches/none", headers=headers, timeout=30).status_code

    started = time.monotonic()
    assert one(0) == 404
    alone = time.monotonic() - started
    started = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(one, range(8))) == [404] * 8
    together = time.monotonic() - started
    assert alone >= 0.2 and together < 4 * alone  # eight at once, not eight in a row (1.6 s)


def test_the_load_downloads_concurrently_with_bounded_memory(env, tmp_path, monkeypatch, database):  # noqa: F811
    server = env(latency=LATENCY)
    frame = pd.DataFrame({"review_id": range(240), "body": [f"Review {i} is fine." for i in range(240)]})
    job = submit(tmp_path, frame, per_batch=10)  # 24 batches
    holding, most_held, lock = [0], [0], threading.Lock()
    real_output = reconcile.Reconciliation._output

    def output(self, hook, ref):  # a batch's lines are in memory from its download until its spool file
        with lock:
            holding[0] += 1
            most_held[0] = max(most_held[0], holding[0])
        try:
            return real_output(self, hook, ref)
        finally:
            with lock:
                holding[0] -= 1

    monkeypatch.setattr(reconcile.Reconciliation, "_output", output)
    peaks = {}
    for concurrency in (1, 8):
        summary = load(job, mode="replace", max_concurrent_downloads=concurrency)
        peaks[concurrency] = server.stats()["in_flight_peak"]["output"]  # the most output requests at once
        assert summary["ok"] == 240
    # One after another, then eight at once (the server may see a client's next request before it
    # has finished the last: one more).
    assert peaks[1] <= 2 and 4 <= peaks[8] <= 8 + 1, peaks
    assert most_held[0] <= 8  # never more batches in memory than downloads at once: the others wait on disk
    assert database("SELECT COUNT(*), COUNT(DISTINCT review_id) FROM review_labels") == [(240, 240)]
