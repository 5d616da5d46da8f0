"""SQLite: one transaction, ``executemany`` per record batch (no per-row commits)."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from airflow_batch_provider.destinations.table import TableWriter


def _iso_text(column: pa.Array) -> pa.Array:
    """Timestamps as ISO 8601 text (SQLite has no timestamp type). A load's timestamps repeat, so
    each distinct value is formatted once (formatting every row costs more than the insert)."""
    encoded = pc.dictionary_encode(column)
    texts = pa.array([None if v is None else v.isoformat() for v in encoded.dictionary.to_pylist()], pa.string())
    return texts.take(encoded.indices)


class SqliteTableWriter(TableWriter):
    types = {"string": "TEXT", "int64": "INTEGER", "double": "REAL", "timestamp[us, tz=UTC]": "TEXT",
             "bool": "INTEGER"}

    def begin(self, conn) -> None:
        # The sqlite3 module would otherwise commit around DDL; we want one explicit transaction.
        conn.isolation_level = None
        conn.execute("BEGIN")

    def stage(self, conn, cursor, batch: pa.RecordBatch) -> None:
        columns = [_iso_text(c) if pa.types.is_timestamp(c.type) else c for c in batch.columns]
        placeholders = ", ".join("?" * len(columns))
        cursor.executemany(f"INSERT INTO {self.staging} VALUES ({placeholders})",
                           zip(*(column.to_pylist() for column in columns)))
