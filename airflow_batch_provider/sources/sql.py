"""A query's result on any ``DbApiHook`` connection as record batches, with one type per column."""

from __future__ import annotations

import uuid
import warnings
from collections.abc import Iterable, Iterator
from typing import Any

import pyarrow as pa

from airflow_batch_provider.protocol import InvalidRequestError
from airflow_batch_provider.sources import READ_BATCH_ROWS
from airflow_batch_provider.tabular.columns import require_columns


def query_chunks(hook: Any, sql: str, parameters: Any,
                 batch_rows: int = READ_BATCH_ROWS) -> Iterator[pa.RecordBatch]:
    """The query's result on ``hook`` (a ``DbApiHook``), streamed in chunks of ``batch_rows``."""
    if getattr(hook, "conn_type", "") != "postgres":
        # common.sql's typed, streaming read. The pyarrow backend keeps int64 ids exact: numpy's
        # would turn a chunk's ints holding a NULL into floats, and ids above 2**53 into other ids.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "pandas only supports SQLAlchemy", UserWarning)
            for frame in hook.get_df_by_chunks(sql, parameters, chunksize=batch_rows,
                                               dtype_backend="pyarrow"):
                yield pa.RecordBatch.from_pandas(frame, preserve_index=False)
        return
    # PostgreSQL: psycopg2's ordinary cursor (and so pandas' read_sql) holds the whole result in
    # memory; a named, server-side cursor streams it.
    conn = hook.get_conn()
    try:
        cursor = conn.cursor(name=f"scaledown_{uuid.uuid4().hex[:8]}")
        cursor.execute(sql, parameters) if parameters else cursor.execute(sql)
        names: list[str] | None = None
        while rows := cursor.fetchmany(batch_rows):
            names = names or [d[0] for d in cursor.description]
            yield pa.RecordBatch.from_pylist([dict(zip(names, row, strict=True)) for row in rows])
        cursor.close()
    finally:
        conn.close()


def one_type_per_column(chunks: Iterable[pa.RecordBatch], id_column: str,
                         text_column: str) -> Iterator[pa.RecordBatch]:
    """The id and text columns of each chunk, with one type for the whole query: a chunk's types are
    inferred from its own values, so an all-NULL chunk reads as ``null`` (or pandas' ``string``) and
    would fix the job's id type wrongly. Text is ``string``; ids take the type of the first chunk with an id, and chunks
    before it wait for it."""
    id_type: pa.DataType | None = None
    waiting: list[pa.RecordBatch] = []
    for chunk in chunks:
        require_columns("the query's result", [id_column, text_column], chunk.schema.names, InvalidRequestError)
        ids, texts = chunk.column(id_column), chunk.column(text_column)
        if not (pa.types.is_string(texts.type) or pa.types.is_large_string(texts.type) or pa.types.is_null(texts.type)):
            raise InvalidRequestError(f"text column {text_column!r} must hold text; the query's result holds "
                                      f"{texts.type}: cast it in the query")
        if id_type is None and ids.null_count < len(ids):  # an all-NULL chunk says nothing of the type
            id_type = ids.type
        waiting.append(pa.record_batch([ids, texts.cast(pa.string())],
                                       names=[id_column, text_column]))
        if id_type is None:
            continue
        for batch in waiting:
            try:
                yield batch.set_column(0, id_column, batch.column(0).cast(id_type))
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise InvalidRequestError(
                    f"column {id_column!r} changes type within the query's result: {id_type} in its first "
                    f"chunk, {batch.column(0).type} later; cast it in the query") from exc
        waiting = []
    yield from waiting  # ids NULL throughout: the spool names those rows
