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
    fetched, handed, most_ahead, lock = [0], [0], [0], threading.Lock()
    real_fetch, real_downloads = reconcile.Reconciliation._fetch, reconcile.Reconciliation._downloads

    def fetch(self, ref):
        result = real_fetch(self, ref)
        with lock:
            fetched[0] += 1
            most_ahead[0] = max(most_ahead[0], fetched[0] - handed[0])
        return result

    def downloads(self):
        for item in real_downloads(self):
            with lock:
                handed[0] += 1
            yield item

    monkeypatch.setattr(reconcile.Reconciliation, "_fetch", fetch)
    monkeypatch.setattr(reconcile.Reconciliation, "_downloads", downloads)
    peaks = {}
    for concurrency in (1, 8):
        summary = load(job, mode="replace", max_concurrent_downloads=concurrency)
        peaks[concurrency] = server.stats()["in_flight_peak"]["output"]  # the most output requests at once
        assert summary["ok"] == 240
    # One after another, then eight at once (the server may see a client's next request before it
    # has finished the last: one more).
    assert peaks[1] <= 2 and 4 <= peaks[8] <= 8 + 1, peaks
    assert most_ahead[0] <= 8 + 1  # never more batches in memory than the window (and the one in hand)
    assert database("SELECT COUNT(*), COUNT(DISTINCT review_id) FROM review_labels") == [(240, 240)]
