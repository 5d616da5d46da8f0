"""Output JSONL -> typed rows landed in a table, 1 M lines, on SQLite, DuckDB and PostgreSQL.

Ours: parse the output lines (the hook's OutputReader), type them (ResultColumns) and land them
(the dialect's TableWriter: one transaction, bulk path). Baseline, same run, same rows already
parsed: ``DbApiHook.insert_rows(commit_every=1000)``; on PostgreSQL also a raw ``COPY`` of the same
rows. Each measurement runs in its own process, so peak RSS (VmHWM) is its own.
Run with `make benchmarks`.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from airflow_batch_provider.emulator.worker import output_line

pytestmark = pytest.mark.benchmark
N = 1_000_000
from tests.conftest import POSTGRES_DSN as PG

COMMON = """
import json, os, time, pyarrow as pa
from airflow.sdk import BaseHook
os.environ["AIRFLOW_CONN_BENCH"] = CONN
from airflow_batch_provider.hooks.output import OutputReader
from airflow_batch_provider.tabular.results_to_columns import ResultColumns
columns = ResultColumns(model="classify", request={"labels": [{"name": "positive"}, {"name": "negative"}]},
                        id_column="review_id", id_type=pa.int64(), label_scores=True)
hook = BaseHook.get_connection("bench").get_hook()
def peak():
    return int(next(l for l in open("/proc/self/status") if l.startswith("VmHWM")).split()[1]) / 1024
"""
OURS = """
from airflow_batch_provider.destinations.table import table_writer_for
def batches():
    reader, buffer = OutputReader("classify"), columns.buffer()
    with open(PATH, "rb") as f:
        while chunk := f.read(1 << 20):
            for line in reader.feed(chunk):
                buffer.add_line(int(line.custom_id), "fp", "batch-1", line)
                if len(buffer) == 50_000:
                    yield buffer.to_record_batch()
                    buffer = columns.buffer()
    if len(buffer):
        yield buffer.to_record_batch()
started = time.perf_counter()
rows = table_writer_for(hook, "bench_ours", "replace", columns.schema, "review_id").write(batches())
print(rows / (time.perf_counter() - started), peak())
"""
BASELINE = """
from airflow_batch_provider.destinations.table import table_writer_for
reader, buffer = OutputReader("classify"), columns.buffer()
with open(PATH, "rb") as f:
    while chunk := f.read(1 << 20):
        for line in reader.feed(chunk):
            buffer.add_line(int(line.custom_id), "fp", "batch-1", line)
table = pa.Table.from_batches([buffer.to_record_batch()]).slice(0, LIMIT)
rows = [tuple(r.values()) for r in table.to_pylist()]
writer = table_writer_for(hook, "bench_base", "replace", columns.schema, "review_id")
conn = hook.get_conn(); cur = conn.cursor()
cur.execute("DROP TABLE IF EXISTS bench_base"); cur.execute(writer.create_target_sql()[0].replace('"bench_base"', "bench_base")); conn.commit(); conn.close()
if MODE == "copy":
    import io, pyarrow.csv as csv
    started = time.perf_counter()
    buf = io.BytesIO(); csv.write_csv(table, buf, csv.WriteOptions(include_header=False))
    conn = hook.get_conn(); cur = conn.cursor()
    with cur.copy("COPY bench_base FROM STDIN WITH (FORMAT csv)") as copy:
        copy.write(buf.getvalue())
    conn.commit()
else:
    started = time.perf_counter()
    hook.insert_rows("bench_base", rows, target_fields=table.column_names, commit_every=1000)
print(len(rows) / (time.perf_counter() - started), peak())
"""


def run(code, conn, path, mode="", limit=N):
    script = (f"CONN = {conn!r}\nPATH = {str(path)!r}\nMODE = {mode!r}\nLIMIT = {limit}\n"
              + textwrap.dedent(COMMON) + textwrap.dedent(code))
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    if out.returncode:
        raise AssertionError(out.stderr[-3000:])
    rate, rss = map(float, out.stdout.split()[-2:])
    return rate, rss


def test_output_to_table(tmp_path):
    path = tmp_path / "output.jsonl"
    with open(path, "wb") as f:
        for i in range(N):
            positive = (i % 7) / 7
            f.write(output_line(str(i), "classify", {
                "top_label": "positive" if positive > 0.5 else "negative",
                "scores": {"positive": positive, "negative": 1 - positive},
                "reasoning": f"Review {i}: the words decide."}, None))
    databases = {
        "SQLite": json.dumps({"conn_type": "sqlite", "host": str(tmp_path / "bench.db")}),
        "DuckDB": json.dumps({"conn_type": "duckdb", "host": str(tmp_path / "bench.duckdb")}),
        "PostgreSQL": PG.replace("postgresql://", "postgres://"),
    }
    # DuckDB's executemany inserts a row at a time (~1-2 k rows/s): its baseline rate is measured
    # on the first 50 000 rows, or it would take most of an hour.
    limits = {"SQLite": N, "DuckDB": 50_000, "PostgreSQL": N}
    print("\n1 M output lines -> table (rows/s, peak RSS MB):", flush=True)
    for name, conn in databases.items():
        ours, ours_rss = run(OURS, conn, path)
        base, base_rss = run(BASELINE, conn, path, limit=limits[name])
        print(f"  {name:<10} ours (parse+type+land) {ours:9,.0f} ({ours_rss:4.0f} MB)   "
              f"insert_rows(commit_every=1000) {base:9,.0f} ({base_rss:4.0f} MB)   ratio {ours / base:5.1f}x",
              flush=True)
        if name == "PostgreSQL":
            copy, copy_rss = run(BASELINE, conn, path, mode="copy")
            print(f"  {'':<10} raw COPY of the same parsed rows {copy:9,.0f} ({copy_rss:4.0f} MB)   "
                  f"ours / COPY = {ours / copy:.2f}  (ours includes parsing and typing)", flush=True)
