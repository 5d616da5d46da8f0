"""Record batches on their way into a destination: sized for a statement, timestamps as text."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import pyarrow as pa
import pyarrow.compute as pc

from airflow_batch_provider.tabular.results_to_columns import RECORD_BATCH_ROWS


def coalesced(batches: Iterable[pa.RecordBatch], rows: int = RECORD_BATCH_ROWS) -> Iterator[pa.RecordBatch]:
    """The same rows in record batches of at least ``rows`` rows (but the last): a statement, a COPY
    or a Parquet row group per few rows would cost more than the rows (memory: one such batch)."""
    pending: list[pa.RecordBatch] = []
    have = 0
    for batch in batches:
        if batch.num_rows:
            pending.append(batch)
            have += batch.num_rows
        if have >= rows:
            yield pa.concat_batches(pending)
            pending, have = [], 0
    if pending:
        yield pa.concat_batches(pending)


def iso_text(column: pa.Array) -> pa.Array:
    """Timestamps as ISO 8601 text. A load's timestamps repeat, so each distinct value is formatted
    once: formatting every row costs more than landing it (SQLite stores the text; PostgreSQL's CSV
    path spent 80 % of its time formatting them)."""
    encoded = pc.dictionary_encode(column)
    texts = pa.array([None if v is None else v.isoformat() for v in encoded.dictionary.to_pylist()], pa.string())
    return texts.take(encoded.indices)
