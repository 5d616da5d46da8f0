"""SQLite: one transaction, ``executemany`` per record batch (no per-row commits)."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from airflow_batch_provider.destinations.table import TableWriter


class SqliteTableWriter(TableWriter):
    types = {"string": "TEXT", "int64": "INTEGER", "double": "REAL", "timestamp[us, tz=UTC]": "TEXT",
             "bool": "INTEGER"}

    def begin(self, conn) -> None:
        # The sqlite3 module would otherwise commit around DDL; we want one explicit transaction.
        conn.isolation_level = None
        conn.execute("BEGIN")

    def stage(self, conn, cursor, batch: pa.RecordBatch) -> None:
        columns = [pc.strftime(c, "%Y-%m-%dT%H:%M:%S.%f+00:00") if pa.types.is_timestamp(c.type) else c
                   for c in batch.columns]
        placeholders = ", ".join("?" * len(columns))
        cursor.executemany(f"INSERT INTO {self.staging} VALUES ({placeholders})",
                           zip(*(column.to_pylist() for column in columns)))
