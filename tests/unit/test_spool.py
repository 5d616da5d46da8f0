import random

import pyarrow as pa
import pytest

from airflow_batch_provider.job.spool import RequestSpool


@pytest.mark.parametrize("seed", range(8))
def test_whole_array_chunking_matches_line_by_line(tmp_path, seed):
    rng = random.Random(seed)
    batches = [[b"x" * rng.randint(5, 40) + b"\n" for _ in range(rng.randint(0, 37))] for _ in range(9)]
    results = []
    for path_name, max_bytes in (("fast", 10_000), ("slow", 10_000)):
        spool = RequestSpool(tmp_path / path_name if (tmp_path / path_name).mkdir() is None else None,
                             pa.string(), 7, max_bytes)
        if path_name == "slow":  # force the general loop: pretend lines could reach the bytes limit
            spool._cut_by_items = spool._cut_by_items_and_bytes
        for lines in batches:
            ids = pa.array([str(i) for i in range(len(lines))])
            spool.add(pa.array(lines, pa.large_binary()), ids, ids, pa.array(["f"] * len(lines)))
        spool.close()
        results.append(spool.chunks)
    assert results[0] == results[1]
    assert sum(chunk.rows for chunk in results[0]) == sum(map(len, batches))


def test_bytes_limit_cuts_chunks(tmp_path):
    spool = RequestSpool(tmp_path, pa.string(), 50, 100)
    lines = [b"y" * 39 + b"\n"] * 6
    spool.add(pa.array(lines, pa.large_binary()), pa.array(list("abcdef")), pa.array(list("abcdef")),
              pa.array(["f"] * 6))
    spool.close()
    assert [(c.rows, c.size) for c in spool.chunks] == [(2, 80), (2, 80), (2, 80)]
    assert spool.read_chunk(spool.chunks[1]) == lines[2:4]

