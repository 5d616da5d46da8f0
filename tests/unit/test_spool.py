import tempfile
from pathlib import Path

import pyarrow as pa
from hypothesis import HealthCheck, given, settings, strategies as st

from airflow_batch_provider.hooks.settings import BatchLimits
from airflow_batch_provider.job.spool import RequestSpool


def _rule(batches, max_items, max_bytes):
    """The rule, one row at a time: a chunk closes when the next row would pass either limit (a
    row alone larger than max_bytes gets a chunk of its own). Chunk sizes, and each row's chunk."""
    chunks, of_row, rows, size = [], [], 0, 0
    for lines in batches:
        for line in lines:
            if rows and (rows >= max_items or size + len(line) > max_bytes):
                chunks.append((rows, size))
                rows = size = 0
            rows, size = rows + 1, size + len(line)
            of_row.append(len(chunks))
    if rows:
        chunks.append((rows, size))
    return chunks, of_row


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches=st.lists(st.lists(st.integers(1, 60), max_size=40), max_size=8),
       max_items=st.integers(1, 12), max_bytes=st.integers(1, 300))
def test_chunks_are_cut_as_the_rule_says_whatever_the_record_batches(tmp_path, batches, max_items, max_bytes):
    lines = [[b"x" * (n - 1) + b"\n" for n in sizes] for sizes in batches]
    directory = tempfile.mkdtemp(dir=tmp_path)
    spool = RequestSpool(Path(directory), pa.string(), BatchLimits(max_items, max_bytes))
    for part in lines:
        ids = pa.array([str(i) for i in range(len(part))], pa.string())
        spool.add(pa.array(part, pa.large_binary()), ids, ids, pa.array(["f"] * len(part)))
    spool.close()
    chunks, of_row = _rule(lines, max_items, max_bytes)
    assert [(c.rows, c.size) for c in spool.chunks] == chunks
    assert pa.ipc.open_stream(spool.rows_path).read_all().column("chunk").to_pylist() == of_row
    assert [c.first_row for c in spool.chunks] == [sum(r for r, _ in chunks[:i]) for i in range(len(chunks))]


def test_bytes_limit_cuts_chunks(tmp_path):
    spool = RequestSpool(tmp_path, pa.string(), BatchLimits(50, 100))
    lines = [b"y" * 39 + b"\n"] * 6
    spool.add(pa.array(lines, pa.large_binary()), pa.array(list("abcdef")), pa.array(list("abcdef")),
              pa.array(["f"] * 6))
    spool.close()
    assert [(c.rows, c.size) for c in spool.chunks] == [(2, 80), (2, 80), (2, 80)]
    assert spool.read_chunk(spool.chunks[1]) == lines[2:4]

