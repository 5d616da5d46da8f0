"""Rows -> JSONL request lines from Parquet: the submit operators' encoding path against naive
pandas baselines (iterrows / itertuples + json.dumps), measured in the same run, each in its own
process so peak RSS is its own. Memory must not grow with the input: 100 k vs 1 M rows.

Run with `make benchmarks`.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

pytestmark = pytest.mark.benchmark
WORDS = ("the kettle arrived quickly and boils water fast but the lid feels flimsy and the handle gets "
         "hot so I would only recommend it if you find it on sale for under forty dollars ").split()

OURS = """
import pyarrow.parquet as pq, tempfile, pathlib
from airflow_batch_provider.protocol import Classify, Label
from airflow_batch_provider.tabular.rows_to_requests import RowEncoder
from airflow_batch_provider.hooks.settings import BatchLimits
from airflow_batch_provider.job.spool import RequestSpool
request = Classify([Label("positive", "Does the review praise it?"), Label("negative", "Does it complain?")])
encoder = RowEncoder(request, "review_id", "body")
spool = None
with tempfile.TemporaryDirectory() as tmp:
    for batch in pq.ParquetFile(PATH).iter_batches(batch_size=25_000, columns=["review_id", "body"]):
        spool = spool or RequestSpool(pathlib.Path(tmp), batch.schema.field("review_id").type,
                                       BatchLimits(50, 50 << 20))
        encoded = encoder.encode(batch)
        spool.add(encoded.lines, encoded.ids, encoded.custom_ids, encoded.fingerprints)
    spool.close()
    rows = spool.rows
"""
BASELINE = """
import json, pandas as pd, tempfile, os
frame = pd.read_parquet(PATH)
labels = [{"name": "positive", "rubric": "Does the review praise it?"}, {"name": "negative", "rubric": "Does it complain?"}]
with tempfile.TemporaryFile() as out:
    rows = 0
    for ITERATION:
        out.write(json.dumps({"custom_id": str(row_id), "method": "POST", "url": "/v1/chat/completions",
                              "body": {"model": "classify", "labels": labels, "text": body}}).encode() + b"\\n")
        rows += 1
"""
ITERROWS = "_, (row_id, body) in frame[['review_id', 'body']].iterrows()"
ITERTUPLES = "row_id, body in frame[['review_id', 'body']].itertuples(index=False)"


def measure(code: str, path, rows: int) -> tuple[float, float]:
    script = textwrap.dedent(f"""
        import time
        PATH = {str(path)!r}
        started = time.perf_counter()
        {textwrap.indent(textwrap.dedent(code), '        ').strip()}
        elapsed = time.perf_counter() - started
        assert rows == {rows}, rows
        # VmHWM: this process's own peak (ru_maxrss would carry the forking parent's over exec)
        peak = next(l for l in open("/proc/self/status") if l.startswith("VmHWM")).split()[1]
        print(elapsed, int(peak) / 1024)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    elapsed, rss = map(float, out.split())
    return rows / elapsed, rss


def make_parquet(path, rows):
    text = " ".join(WORDS * 3)[:600]
    ids = pa.array(range(rows), pa.int64())
    bodies = pa.array([f"{i} {text}" for i in range(rows)])
    pq.write_table(pa.table({"review_id": ids, "body": bodies}), path, row_group_size=50_000)


def test_rows_to_jsonl(tmp_path):
    small, large = tmp_path / "100k.parquet", tmp_path / "1m.parquet"
    make_parquet(small, 100_000)
    make_parquet(large, 1_000_000)
    ours_rate, ours_rss_large = measure(OURS, large, 1_000_000)
    _, ours_rss_small = measure(OURS, small, 100_000)
    tuples_rate, tuples_rss = measure(BASELINE.replace("ITERATION", ITERTUPLES), large, 1_000_000)
    rows_rate, _ = measure(BASELINE.replace("ITERATION", ITERROWS), small, 100_000)
    print(f"\nrows -> JSONL request lines, ~600-byte texts from Parquet (rows/s, peak RSS):"
          f"\n  iterrows + json.dumps (100 k rows)    {rows_rate:10,.0f}"
          f"\n  itertuples + json.dumps (1 M rows)    {tuples_rate:10,.0f}   {tuples_rss:7.0f} MB"
          f"\n  provider: validate + encode + spool   {ours_rate:10,.0f}   {ours_rss_large:7.0f} MB at 1 M, "
          f"{ours_rss_small:.0f} MB at 100 k"
          f"\n  ratios: vs iterrows {ours_rate / rows_rate:.1f}x, vs itertuples {ours_rate / tuples_rate:.1f}x; "
          f"RSS 1 M / 100 k = {ours_rss_large / ours_rss_small:.2f}")
