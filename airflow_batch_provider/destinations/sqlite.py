"""SQLite: one transaction, ``executemany`` per record batch (no per-row commits).

SQLite has one writer at a time. The load takes the write lock when its transaction begins
(``BEGIN IMMEDIATE``), so a second load waits for it (the busy timeout) instead of failing with
"database is locked" when its read transaction cannot become a write one.
"""

from __future__ import annotations

import sqlite3

import pyarrow as pa

from airflow_batch_provider.destinations.limits import SQLITE
from airflow_batch_provider.destinations.table import TableWriter
from airflow_batch_provider.tabular.record_batches import iso_text


class SqliteTableWriter(TableWriter):
    """SQLite: one ``BEGIN IMMEDIATE`` transaction and ``executemany``."""
    types = {"string": "TEXT", "int64": "INTEGER", "double": "REAL", "timestamp[us, tz=UTC]": "TEXT",
             "bool": "INTEGER"}
    limits = SQLITE

    def begin(self, conn) -> None:
        """Take the database's write lock with BEGIN IMMEDIATE, waiting up to ``lock_timeout``."""
        # The sqlite3 module would otherwise commit around DDL; we want one explicit transaction.
        conn.isolation_level = None
        # Once the lock is ours, the commit may still wait for readers: never with a zero timeout.
        patient = f"PRAGMA busy_timeout = {2**31 - 1 if self.lock_timeout is None else int(self.lock_timeout * 1000)}"

        def now() -> bool:
            conn.execute("PRAGMA busy_timeout = 0")
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise
                return False
            finally:
                conn.execute(patient)
            return True

        def waiting() -> None:
            conn.execute("BEGIN IMMEDIATE")

        self.waiting(now, waiting)

    index_after_rows = True

    def existing_columns(self, conn, cursor) -> list[str] | None:
        """The target's columns from ``PRAGMA table_info``, or None when it does not exist."""
        # From the catalog: the generic way (a failing SELECT, then rollback) would give up the
        # write lock BEGIN IMMEDIATE took.
        schema, _, table = self.table.rpartition(".")
        prefix = self.quote(schema) + "." if schema else ""
        columns = cursor.execute(f"PRAGMA {prefix}table_info({self.quote(table)})").fetchall()
        return [row[1] for row in columns] or None

    def unique_index_sql(self, name: str) -> str:
        """CREATE UNIQUE INDEX with the schema on the index's name, as SQLite wants it."""
        # SQLite puts the schema on the index's name, not on the table's ("main"."i" ON "t").
        schema, _, table = self.table.rpartition(".")
        index = f"{self.quote(schema)}.{self.quote(name)}" if schema else self.quote(name)
        return f"CREATE UNIQUE INDEX {index} ON {self.quote(table)} ({self.quote(self.id_column)})"

    def stage(self, conn, cursor, batch: pa.RecordBatch, table: str) -> None:
        """Insert one record batch into ``table``, timestamps as ISO 8601 text."""
        columns = [iso_text(c) if pa.types.is_timestamp(c.type) else c for c in batch.columns]
        placeholders = ", ".join("?" * len(columns))
        cursor.executemany(f"INSERT INTO {table} VALUES ({placeholders})",
                           zip(*(column.to_pylist() for column in columns), strict=True))
