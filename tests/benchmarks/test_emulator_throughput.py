"""Emulator throughput for 100 000 mixed items (summarize / extract / classify), in items/s.

Run with `make benchmarks`. The baseline in the same run is the engines alone, called in a loop
without HTTP or storage; the ratio says what the server (upload, SQLite, output streaming) costs.
"""

import time

import msgspec
import pytest
import requests

from airflow_batch_provider.emulator import engines
from airflow_batch_provider.protocol import BatchStatus, Classify, Extract, Label, LineEncoder, Summarize

pytestmark = pytest.mark.benchmark
N = 100_000
TEXTS = [
    "The Sony WH-1000XM5 headphones arrived on March 3 from Amazon for $349. Great sound, but the case cracked.",
    "Terrible support. I called twice and nobody from Dyson answered. The V15 stopped working after 10 days.",
    "Maria Lopez from Berlin says the Breville espresso machine is worth every cent. Highly recommended!",
]
REQUESTS = [
    Summarize(instructions="Use bullet points.", max_tokens=60),
    Extract({"product": "product name", "price": "price paid", "person": "name of the reviewer"}),
    Classify([Label("positive", "Does the review praise the product?"),
              Label("negative", "Does the review complain?")]),
]


def test_emulator_items_per_second(make_emulator):
    encoders = [LineEncoder(r) for r in REQUESTS]
    lines = [encoders[i % 3].encode(f"item-{i}", TEXTS[i % 3] + f" Order {i}.") for i in range(N)]

    started = time.perf_counter()
    for line in lines:
        engines.run(msgspec.json.decode(line)["body"])
    engine_rate = N / (time.perf_counter() - started)

    server = make_emulator()
    headers = {"x-api-key": server.api_key}
    started = time.perf_counter()
    body = (b"".join(lines[k:k + 1000]) for k in range(0, N, 1000))
    batch = BatchStatus.from_json(requests.post(server.url + "/v1/batches", data=body, headers=headers).json())
    while not batch.terminal:
        time.sleep(0.1)
        batch = BatchStatus.from_json(requests.get(f"{server.url}/v1/batches/{batch.batch_id}", headers=headers).json())
    processed = time.perf_counter()
    with requests.get(f"{server.url}/v1/batches/{batch.batch_id}/output", headers=headers, stream=True) as out:
        received = sum(chunk.count(b"\n") for chunk in out.iter_content(1 << 16))
    finished = time.perf_counter()
    assert batch.completed == N and received == N
    server_rate = N / (processed - started)
    print(f"\nemulator, {N} mixed items on this machine:"
          f"\n  engines alone (baseline)        {engine_rate:10,.0f} items/s"
          f"\n  submit -> completed over HTTP   {server_rate:10,.0f} items/s  (ratio {server_rate / engine_rate:.2f})"
          f"\n  submit -> output fully read     {N / (finished - started):10,.0f} items/s")
