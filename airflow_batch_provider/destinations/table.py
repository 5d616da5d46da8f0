"""Atomic, idempotent landing of result rows in a database table.

Rows stream into a staging table; then, in the same transaction, they are merged into the target:

- ``replace``: the target's rows are all replaced;
- ``upsert``: rows whose id is in staging are replaced, others kept;
- ``append``: rows are added; rows of the same batches from an earlier run of this job are replaced
  first, so a re-run lands each row exactly once.

The target is created (with column types for the dialect) when it does not exist, in that same
transaction: a failure anywhere leaves no partial table and no partial merge. An existing target
must have every result column, or the load is refused before anything is written.

Dialects with a bulk path get a writer of their own (PostgreSQL ``COPY``, DuckDB Arrow ingestion,
SQLite one-transaction ``executemany``); any other ``DbApiHook`` uses :class:`TableWriter` with
``insert_rows`` into a staging table.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable

import pyarrow as pa

from airflow.providers.common.sql.hooks.sql import DbApiHook

MODES = ("append", "replace", "upsert")


class TableSchemaError(ValueError):
    """The existing target table cannot take the result rows."""


def quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def quote_table(name: str) -> str:
    return ".".join(quote(part) for part in name.split("."))


class TableWriter:
    """The generic writer: any DbApiHook, staging through ``insert_rows`` (the slow, portable path)."""

    types = {"string": "TEXT", "int64": "BIGINT", "double": "DOUBLE PRECISION",
             "timestamp[us, tz=UTC]": "TIMESTAMP", "bool": "BOOLEAN"}

    def __init__(self, hook: DbApiHook, table: str, mode: str, schema: pa.Schema, id_column: str) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        self.hook = hook
        self.table = table
        self.target = quote_table(table)
        self.mode = mode
        self.schema = schema
        self.id_column = id_column
        self.staging_name = f"scaledown_staging_{uuid.uuid4().hex[:12]}"
        self.staging = quote(self.staging_name)
        self.column_list = ", ".join(quote(name) for name in schema.names)

    # -- SQL -------------------------------------------------------------------------------------
    def column_type(self, field: pa.Field) -> str:
        return self.types[str(field.type)]

    def columns_ddl(self) -> str:
        return ", ".join(f"{quote(f.name)} {self.column_type(f)}" for f in self.schema)

    def create_target_sql(self) -> str:
        return f"CREATE TABLE IF NOT EXISTS {self.target} ({self.columns_ddl()})"

    def create_staging_sql(self) -> str:
        return f"CREATE TEMPORARY TABLE {self.staging} ({self.columns_ddl()})"

    def merge_sql(self) -> list[str]:
        insert = (f"INSERT INTO {self.target} ({self.column_list}) "
                  f"SELECT {self.column_list} FROM {self.staging}")
        if self.mode == "replace":
            return [f"DELETE FROM {self.target}", insert]
        key = quote(self.id_column) if self.mode == "upsert" else quote("batch_id")
        return [f"DELETE FROM {self.target} WHERE {key} IN (SELECT {key} FROM {self.staging})", insert]

    # -- checks ----------------------------------------------------------------------------------
    def existing_columns(self, conn, cursor) -> list[str] | None:
        """The target's columns, or None when it does not exist."""
        try:
            cursor.execute(f"SELECT * FROM {self.target} WHERE 1 = 0")
        except Exception as exc:  # noqa: BLE001 - drivers differ; decide on the message
            text = str(exc).lower()
            if any(s in text for s in ("no such table", "does not exist", "doesn't exist", "not found",
                                       "catalog error")):
                # Nothing has run yet; some databases abort a transaction on any error, so start over.
                conn.rollback()
                self.begin(conn)
                return None
            raise
        return [d[0] for d in cursor.description]

    def check_target(self, conn, cursor) -> None:
        existing = self.existing_columns(conn, cursor)
        if existing is None:
            cursor.execute(self.create_target_sql())
            return
        missing = [name for name in self.schema.names if name not in existing]
        if missing:
            raise TableSchemaError(
                f"table {self.table} exists but has no column {', '.join(missing)} for the results; "
                f"its columns are {', '.join(existing)}. Add them, drop the table, or load elsewhere.")

    # -- the transaction ---------------------------------------------------------------------------
    def write(self, batches: Iterable[pa.RecordBatch]) -> int:
        """Stage every batch and merge, all or nothing; returns the rows landed."""
        conn = self.hook.get_conn()
        try:
            self.begin(conn)
            cursor = self.cursor(conn)
            self.check_target(conn, cursor)
            cursor.execute(self.create_staging_sql())
            rows = 0
            for batch in batches:
                if batch.num_rows:
                    self.stage(conn, cursor, batch)
                    rows += batch.num_rows
            for statement in self.merge_sql():
                cursor.execute(statement)
            cursor.execute(f"DROP TABLE {self.staging}")
            conn.commit()
            return rows
        except BaseException:
            conn.rollback()
            raise
        finally:
            conn.close()

    def begin(self, conn) -> None:
        """Make sure DDL and DML from here on are one transaction."""

    def cursor(self, conn):
        return conn.cursor()

    def stage(self, conn, cursor, batch: pa.RecordBatch) -> None:
        placeholders = ", ".join([getattr(self.hook, "placeholder", "%s")] * len(self.schema))
        cursor.executemany(f"INSERT INTO {self.staging} ({self.column_list}) VALUES ({placeholders})",
                           list(zip(*(column.to_pylist() for column in batch.columns))))


def table_writer_for(hook: DbApiHook, table: str, mode: str, schema: pa.Schema, id_column: str) -> TableWriter:
    """The writer with the bulk path for the hook's database, or the generic one."""
    kind = (getattr(hook, "conn_type", "") or "").lower()
    if kind == "postgres":
        from airflow_batch_provider.destinations.postgres import PostgresTableWriter as writer
    elif kind == "duckdb":
        from airflow_batch_provider.destinations.duckdb import DuckDBTableWriter as writer
    elif kind == "sqlite":
        from airflow_batch_provider.destinations.sqlite import SqliteTableWriter as writer
    else:
        writer = TableWriter
    return writer(hook, table, mode, schema, id_column)
