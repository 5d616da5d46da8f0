"""One job over a modelled network: 100,000 rows from Parquet, the emulator answering every request
50 ms late (--latency 0.05), API v2 (50 per batch), dag.test() submit -> sensor -> PostgreSQL upsert.

Each task's seconds are printed next to its latency floor: batches x latency / concurrency for the
submit (one POST per batch) and for the load (one output request per completed batch: it asks for the
output first). Run with `make benchmarks`.
"""

from __future__ import annotations

import json
import os

import psycopg2
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import POSTGRES_DSN, load_dag
from tests.emulator_helpers import EmulatorProcess

pytestmark = [pytest.mark.benchmark, pytest.mark.usefixtures("airflow_db")]
ROWS, PER_BATCH, LATENCY, CONCURRENCY = 100_000, 50, 0.05, 8


def test_pipeline_against_its_latency_floor(tmp_path, monkeypatch):
    texts = [f"Review {i}: the kettle boils fast and the handle stays cool. Shipping took two days." for i in range(ROWS)]
    pq.write_table(pa.table({"id": pa.array(range(ROWS), pa.int64()), "text": texts}), tmp_path / "rows.parquet")
    with psycopg2.connect(POSTGRES_DSN) as conn, conn.cursor() as cur:
        cur.execute("DROP TABLE IF EXISTS bench_latency")
    emulator = EmulatorProcess(["--api-version", "2", "--latency", str(LATENCY)], tmp_path).start()
    try:
        monkeypatch.setenv("AIRFLOW_CONN_BATCH_API_DEFAULT", json.dumps(
            {"conn_type": "batch_api", "host": emulator.url, "password": emulator.api_key}))
        monkeypatch.setenv("AIRFLOW_CONN_BENCH_PG", POSTGRES_DSN.replace("postgresql://", "postgres://"))
        run = load_dag("bench_latency").test(run_conf={"path": str(tmp_path / "rows.parquet"),
                                                       "manifest_dir": str(tmp_path / "jobs")})
        seconds = {ti.task_id: (ti.end_date - ti.start_date).total_seconds() for ti in run.get_task_instances()}
        assert run.state == "success", seconds
    finally:
        emulator.stop()
    with psycopg2.connect(POSTGRES_DSN) as conn, conn.cursor() as cur:
        cur.execute("SELECT COUNT(*), COUNT(DISTINCT id) FROM bench_latency")
        assert cur.fetchone() == (ROWS, ROWS)
    batches = ROWS // PER_BATCH
    submits = int(os.environ.get("BENCH_SUBMIT_CONCURRENCY", CONCURRENCY))
    floors = {"submit": batches * LATENCY / submits, "load": batches * LATENCY / CONCURRENCY}
    print(f"\n{ROWS} rows, {batches} batches, {LATENCY * 1000:.0f} ms per request, concurrency {submits} "
          f"(submit) and {CONCURRENCY} (load)")
    for task, floor in floors.items():
        print(f"{task}: {seconds[task]:.1f} s, floor {floor:.1f} s, ratio {seconds[task] / floor:.2f}")
    print(f"wait (sensor, deferred): {seconds['wait']:.1f} s")
