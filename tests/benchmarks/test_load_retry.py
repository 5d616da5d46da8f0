"""What a retry of the load costs (issue 24): 100,000 rows (2,000 batches of 50), the emulator 50 ms
away, PostgreSQL upsert. In one run: a load from scratch (the baseline); then a load that meets an
outage after half the batches were read and gives up; then its retry, which reads only the other
half from the API and the first half from the job's spool. Printed: each one's seconds and output
requests, and the retry against the baseline. Run with `make benchmarks`.
"""

from __future__ import annotations

import json
import time

import pandas as pd
import psycopg2
import pytest

from airflow_batch_provider.job.reconcile import BatchDownloadError
from airflow_batch_provider.operators.load import BatchOutputToTableOperator
from airflow_batch_provider.operators.submit import DataFrameToBatchOperator
from airflow_batch_provider.protocol import Summarize
from tests.conftest import POSTGRES_DSN
from tests.emulator_helpers import EmulatorProcess, wait_for_job
from tests.state_store import DictStateStore

pytestmark = pytest.mark.benchmark
ROWS, PER_BATCH, LATENCY = 100_000, 50, 0.05


def test_a_retry_of_the_load_reads_only_what_is_missing(tmp_path, monkeypatch):
    emulator = EmulatorProcess(["--api-version", "2", "--latency", str(LATENCY)], tmp_path).start()
    try:
        monkeypatch.setenv("AIRFLOW_CONN_BATCH_API_DEFAULT", json.dumps(
            {"conn_type": "batch_api", "host": emulator.url, "password": emulator.api_key,
             "extra": {"retry_total_timeout": 5}}))  # the outage below outlasts it
        monkeypatch.setenv("AIRFLOW_CONN_BENCH_PG", POSTGRES_DSN.replace("postgresql://", "postgres://"))
        monkeypatch.setenv("AIRFLOW__SCALEDOWN__SPOOL_DIR", str(tmp_path / "spool"))
        with psycopg2.connect(POSTGRES_DSN) as conn, conn.cursor() as cur:
            cur.execute("DROP TABLE IF EXISTS bench_load_retry")
        frame = pd.DataFrame({"id": range(ROWS), "text": [f"Review {i}: the kettle boils fast." for i in range(ROWS)]})
        job = DataFrameToBatchOperator(task_id="submit", dataframe=frame, id_column="id", text_column="text",
                                       request=Summarize(), manifest_dir=str(tmp_path / "jobs")
                                       ).execute({"task_state_store": DictStateStore()})
        wait_for_job(job, timeout=600)

        def load() -> tuple[float, int]:
            before = emulator.stats()["requests"].get("output", 0)
            started = time.monotonic()
            try:
                BatchOutputToTableOperator(task_id="load", job=job, conn_id="bench_pg", table="bench_load_retry",
                                           mode="upsert").execute({})
            finally:
                seconds, asked = time.monotonic() - started, emulator.stats()["requests"]["output"] - before
            return seconds, asked

        baseline = load()
        batches = ROWS // PER_BATCH
        emulator.control("/_emulator/faults", rate=1.0, kinds=["502"], routes=["output"], skip_first=batches // 2)
        started = time.monotonic()
        with pytest.raises(BatchDownloadError):
            load()
        failed = time.monotonic() - started
        emulator.control("/_emulator/faults", rate=0.0)
        retry = load()
    finally:
        emulator.stop()
    assert retry[1] <= batches // 2 + 8  # the other half (and the reads under way when the outage began)
    print(f"\n{ROWS:,} rows, {batches:,} batches, {LATENCY * 1000:.0f} ms a request, PostgreSQL upsert:"
          f"\n  load from scratch: {baseline[0]:.1f} s, {baseline[1]:,} output requests"
          f"\n  a load that gave up after half the batches: {failed:.1f} s (5 s of it the retry budget)"
          f"\n  its retry: {retry[0]:.1f} s, {retry[1]:,} output requests "
          f"({retry[0] / baseline[0]:.2f}x the load from scratch)")
