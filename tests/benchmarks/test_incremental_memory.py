"""Incremental runs at warehouse size: a nightly job of 5,000 rows against a destination that holds
1 M and then 5 M landed rows. The submit (dry run: everything up to paying) asks the destination
about each batch's ids only, so its peak memory must not depend on the table's size. Each run is its
own process, so its peak RSS (VmHWM) is its own. Run with `make benchmarks`.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import psycopg2
import pytest

from tests.conftest import POSTGRES_DSN

pytestmark = pytest.mark.benchmark
INPUT_ROWS = 5_000

SUBMIT = """
import json, os, time
import pandas as pd
os.environ["AIRFLOW_CONN_WH"] = PG
os.environ["AIRFLOW_CONN_BATCH_API_DEFAULT"] = json.dumps({"conn_type": "batch_api", "host": "http://127.0.0.1:9", "password": "k"})
from airflow_batch_provider.operators.submit import DataFrameToBatchOperator
from airflow_batch_provider.protocol import Summarize
frame = pd.DataFrame({"id": range(0, 2 * ROWS, 2), "body": [f"Ticket {i} text." for i in range(ROWS)]})
started = time.perf_counter()
report = DataFrameToBatchOperator(task_id="s", dataframe=frame, id_column="id", text_column="body", request=Summarize(),
                                  skip_landed_conn_id="wh", skip_landed_table="bench_landed", dry_run=True,
                                  allow_empty=True).execute({})
seconds = time.perf_counter() - started
peak = int(next(l for l in open("/proc/self/status") if l.startswith("VmHWM")).split()[1]) / 1024
print(report["skipped_rows"], seconds, peak)
"""


def landed_table(rows: int) -> None:
    with psycopg2.connect(POSTGRES_DSN) as conn, conn.cursor() as cur:
        cur.execute("DROP TABLE IF EXISTS bench_landed")
        cur.execute("CREATE TABLE bench_landed (id BIGINT, status TEXT, request_fingerprint TEXT)")
        cur.execute("INSERT INTO bench_landed SELECT g, 'ok', md5(g::text) FROM generate_series(1, %s) g", (rows,))
        cur.execute("CREATE UNIQUE INDEX ON bench_landed (id)")
        cur.execute("ANALYZE bench_landed")


def test_peak_memory_does_not_grow_with_the_destination():
    pg = POSTGRES_DSN.replace("postgresql://", "postgres://")
    results = {}
    for rows in (1_000_000, 5_000_000):
        landed_table(rows)
        script = f"PG = {pg!r}\nROWS = {INPUT_ROWS}\n" + textwrap.dedent(SUBMIT)
        out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
        assert out.returncode == 0, out.stderr[-3000:]
        skipped, seconds, peak = out.stdout.split()[-3:]
        results[rows] = (int(skipped), float(seconds), float(peak))
    with psycopg2.connect(POSTGRES_DSN) as conn, conn.cursor() as cur:
        cur.execute("DROP TABLE bench_landed")
    print(f"\nincremental submit of {INPUT_ROWS:,} rows (dry run) against a table of landed rows:")
    for rows, (skipped, seconds, peak) in results.items():
        print(f"  {rows:>9,} landed: {seconds:5.2f} s, peak RSS {peak:5.0f} MB ({skipped} rows skipped)")
    print(f"  peak ratio 5 M / 1 M: {results[5_000_000][2] / results[1_000_000][2]:.2f}")
