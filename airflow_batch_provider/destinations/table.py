"""Atomic, idempotent landing of result rows in a database table.

Rows stream into a staging table; then, in the same transaction, they are merged into the target:

- ``replace``: the target's rows are all replaced;
- ``upsert``: rows whose id is in staging are replaced, others kept;
- ``append``: rows are added; rows of the same batches from an earlier run of this job are replaced
  first, so a re-run lands each row exactly once.

The target is created (with column types for the dialect) when it does not exist, in that same
transaction, and then the rows go straight into it rather than through staging (which would copy
every row twice): a failure anywhere leaves no partial table and no partial merge. An existing target
must have every result column, or the load is refused before anything is written. A target created
by an ``upsert`` load gets a unique index on the id column, so the database itself refuses a second
row for an id.

**Overlapping loads of one table serialise**: a backfill beside the schedule, a manual re-run,
mapped tasks over partitions that share ids. Each dialect takes the target's lock in its own way
before it merges, or before it creates a new target (:meth:`TableWriter.lock_target`), logs when it
has to wait and for how long, and gives up after ``lock_timeout`` seconds (the task's
``execution_timeout``). Only a table's first load holds the lock while its rows stream in.

Dialects with a bulk path get a writer of their own (PostgreSQL ``COPY``, DuckDB Parquet scans,
SQLite one-transaction ``executemany``, MySQL/MariaDB ``LOAD DATA``), built on :class:`TableWriter`'s
stage-then-merge transaction. Any other ``DbApiHook`` gets :class:`GenericTableWriter`, which needs no
temporary table (their syntax differs: ``#t`` on MSSQL, global temporary tables on Oracle) and takes
its quoting, existence and columns from common.sql (the hook's ``escape_word_format``, its SQLAlchemy
inspector, ``dialect.generate_insert_sql``).
:func:`~airflow_batch_provider.destinations.table_writer_for` picks one.

Every identifier goes through one quoter (:mod:`.identifiers`).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import time
import uuid
from collections.abc import Iterable, Iterator
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from airflow.providers.common.sql.hooks.sql import DbApiHook

from airflow_batch_provider.destinations.errors import (
    TableLockTimeoutError as TableLockTimeoutError,
    TableSchemaError as TableSchemaError,
)
from airflow_batch_provider.destinations.identifiers import (
    identifier_quoter as identifier_quoter,
    qualified as qualified,
    refuse_percent as refuse_percent,
)
from airflow_batch_provider.destinations.limits import GENERIC
from airflow_batch_provider.logs import TaskLog
from airflow_batch_provider.tabular.columns import require_columns
from airflow_batch_provider.tabular.record_batches import (  # importable here as before
    coalesced as coalesced,
    iso_text as iso_text,
)

MODES = ("append", "replace", "upsert")


@contextlib.contextmanager
def one_transaction(conn: Any) -> Iterator[Any]:
    """Commit what the block did, or roll all of it back; the connection is closed either way."""
    try:
        yield conn
        conn.commit()
    except BaseException:
        conn.rollback()
        raise
    finally:
        conn.close()


class TableWriter:
    """Stage, then merge in one transaction: the base of the dialects' writers. Staging here uses
    ``executemany``; a dialect overrides ``stage`` with its bulk path and ``lock_target`` with its lock.
    """

    types = {"string": "TEXT", "int64": "BIGINT", "double": "DOUBLE PRECISION",
             "timestamp[us, tz=UTC]": "TIMESTAMP", "bool": "BOOLEAN"}
    limits = GENERIC
    # Build a new table's index after its rows (once, not row by row) only where DDL is
    # transactional: elsewhere (MySQL, Oracle) CREATE INDEX commits the rows before it.
    index_after_rows = False

    def __init__(self, hook: DbApiHook, table: str, mode: str, schema: pa.Schema, id_column: str, *,
                 lock_timeout: float | None = None, log: TaskLog | None = None) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        self.hook = hook
        self.quote = identifier_quoter(hook)
        self.table = table
        self.target = qualified(self.quote, table)
        self.mode = mode
        self.schema = schema
        self.id_column = id_column
        self.staging_name = f"scaledown_staging_{uuid.uuid4().hex[:12]}"
        self.staging = self.quote(self.staging_name)
        self.column_list = ", ".join(self.quote(name) for name in schema.names)
        self.lock_timeout = lock_timeout
        self.log = log or logging.getLogger(__name__)

    # -- SQL -------------------------------------------------------------------------------------
    def column_type(self, field: pa.Field) -> str:
        """The dialect's column type for an Arrow field."""
        return self.types[str(field.type)]

    def columns_ddl(self) -> str:
        """The column list of a CREATE TABLE, every name quoted."""
        return ", ".join(f"{self.quote(f.name)} {self.column_type(f)}" for f in self.schema)

    def create_target_sql(self, if_not_exists: bool = True) -> list[str]:
        """The statements that create the target (with a unique index on the id for an upsert table)."""
        statements = [f"CREATE TABLE {'IF NOT EXISTS ' if if_not_exists else ''}{self.target} ({self.columns_ddl()})"]
        if self.mode == "upsert":  # the database itself then refuses a second row for an id
            statements.append(self.unique_index_sql(
                "scaledown_uq_" + hashlib.blake2b(self.table.encode(), digest_size=6).hexdigest()))
        return statements

    def unique_index_sql(self, name: str) -> str:
        """CREATE UNIQUE INDEX on the id column."""
        return f"CREATE UNIQUE INDEX {self.quote(name)} ON {self.target} ({self.quote(self.id_column)})"

    def create_staging_sql(self) -> str:
        """CREATE the staging table, shaped as the target."""
        return f"CREATE TEMPORARY TABLE {self.staging} ({self.columns_ddl()})"

    def drop_staging_sql(self) -> str:
        """DROP the staging table."""
        return f"DROP TABLE {self.staging}"

    def merge_key(self) -> str | None:
        """The column whose staged values replace the target's rows: ids (upsert), batches (append)."""
        return {"upsert": self.id_column, "append": "batch_id"}.get(self.mode)

    def merge_sql(self) -> list[str]:
        """The statements that merge staging into the target, by mode."""
        insert = (f"INSERT INTO {self.target} ({self.column_list}) "
                  f"SELECT {self.column_list} FROM {self.staging}")
        if self.mode == "replace":
            return [f"DELETE FROM {self.target}", insert]
        key = self.quote(str(self.merge_key()))
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
        columns = [d[0] for d in cursor.description]
        cursor.fetchall()  # some drivers (mysql-connector) refuse the next statement while a result is unread
        return columns

    def check_target(self, conn, cursor) -> bool:
        """True when the target exists (and fits); refuses a target that cannot take the rows."""
        existing = self.existing_columns(conn, cursor)
        if existing is None:
            return False
        require_columns(f"table {self.table}", self.schema.names, existing, TableSchemaError,
                        "Add the result columns, drop the table, or load elsewhere.")
        return True

    # -- the transaction ---------------------------------------------------------------------------
    def write(self, batches: Iterable[pa.RecordBatch]) -> int:
        """Land every row, all or nothing; returns the rows landed.

        An existing target: stage every batch, lock the target and merge. A new one: lock it first,
        create it and write the rows straight into it (staging would copy every row twice), then
        build its index once. Only a table's first load holds the lock while its rows stream in.
        """
        with one_transaction(self.hook.get_conn()) as conn:
            self.begin(conn)
            cursor = self.cursor(conn)
            exists = self.check_target(conn, cursor)
            locked = not exists
            if locked:
                self.lock_target(conn, cursor)
                exists = self.check_target(conn, cursor)  # another load may have created it meanwhile
            if exists:
                cursor.execute(self.create_staging_sql())
                rows = self.stage_all(conn, cursor, coalesced(batches), self.staging)
                if not locked:
                    self.lock_target(conn, cursor)
                for statement in self.merge_sql():
                    cursor.execute(statement)
                cursor.execute(self.drop_staging_sql())
            else:
                # No IF NOT EXISTS: should another load have created the table after all, this fails
                # (nothing written) and the task's retry merges, instead of adding rows unmerged.
                create_table, *indexes = self.create_target_sql(if_not_exists=False)
                cursor.execute(create_table)
                for statement in [] if self.index_after_rows else indexes:
                    cursor.execute(statement)
                rows = self.stage_all(conn, cursor, coalesced(batches), self.target)
                for statement in indexes if self.index_after_rows else []:
                    cursor.execute(statement)
        return rows

    def lock_target(self, conn, cursor) -> None:
        """Serialise with other loads of the target, until this transaction ends (none here)."""

    def waiting(self, acquire_now, acquire_waiting) -> None:
        """Take a lock: at once if free, else log that this load waits, wait, and log for how long."""
        if acquire_now():
            return
        self.log.info("Waiting for another load of table %s to finish (lock_timeout %s)", self.table,
                      "none" if self.lock_timeout is None else f"{self.lock_timeout:.0f} s")
        started = time.monotonic()
        try:
            acquire_waiting()
        except Exception as exc:
            if self.lock_timeout is not None and time.monotonic() - started >= self.lock_timeout * 0.9:
                raise TableLockTimeoutError(
                    f"gave up after {time.monotonic() - started:.1f} s waiting for another load of table "
                    f"{self.table} (lock_timeout {self.lock_timeout:.0f} s); nothing was written") from exc
            raise
        self.log.info("Waited %.1f s for another load of table %s", time.monotonic() - started, self.table)

    def begin(self, conn) -> None:
        """Make sure DDL and DML from here on are one transaction."""

    def cursor(self, conn):
        """A cursor on the load's connection."""
        return conn.cursor()

    def stage_all(self, conn, cursor, batches: Iterable[pa.RecordBatch], table: str) -> int:
        """Write every batch into ``table`` (quoted: the staging table, or a new target); returns the rows."""
        rows = 0
        for batch in batches:
            self.stage(conn, cursor, batch, table)
            rows += batch.num_rows
        return rows

    def stage(self, conn, cursor, batch: pa.RecordBatch, table: str) -> None:
        """Insert one record batch into ``table`` with ``executemany``."""
        placeholders = ", ".join([getattr(self.hook, "placeholder", "%s")] * len(self.schema))
        cursor.executemany(f"INSERT INTO {table} ({self.column_list}) VALUES ({placeholders})",
                           list(zip(*(column.to_pylist() for column in batch.columns), strict=True)))


class GenericTableWriter(TableWriter):
    """Any other DbApiHook (MSSQL, Oracle, Snowflake, ...): the portable, slow path.

    One transaction and no temporary table: the target is created when the inspector does not know
    it; ``replace`` first deletes every row; then each record batch deletes the rows it replaces (its
    ids for ``upsert``, its batches for ``append``) and inserts itself with ``executemany`` through
    common.sql's ``dialect.generate_insert_sql`` (the hook's placeholder and insert format). It takes
    no lock of its own: overlapping loads are protected by the database's isolation and, for tables
    it creates in ``upsert`` mode, the unique index on the id column.
    """

    ROWS_PER_DELETE = 1000  # keys per DELETE: under every driver's limit on bound parameters
    _dialect: Any = None  # the database's SQLAlchemy dialect, when the hook has a SQLAlchemy URI

    def existing_columns(self, conn, cursor) -> list[str] | None:
        """The target's columns from common.sql's SQLAlchemy inspector (or a probing SELECT), or None."""
        from sqlalchemy import inspect
        from sqlalchemy.sql import quoted_name

        try:
            engine = self.hook.get_sqlalchemy_engine()
        except Exception:  # noqa: BLE001 - no SQLAlchemy URI (JDBC, ODBC without a scheme): probe the table
            return super().existing_columns(conn, cursor)
        try:  # a fresh inspector: a cached one would miss a table another load just created
            self._dialect = engine.dialect
            schema, _, name = self.table.rpartition(".")
            # Names are always quoted here, so they are case-sensitive: Oracle and Snowflake would
            # otherwise look a plain lower-case name up in upper case.
            table = quoted_name(name, quote=True)
            owner = quoted_name(schema, quote=True) if schema else None
            inspector = inspect(engine)
            if not inspector.has_table(table, schema=owner):
                return None
            return [column["name"] for column in inspector.get_columns(table, schema=owner)]
        finally:
            engine.dispose()

    def column_type(self, field: pa.Field) -> str:
        """The type the database's own SQLAlchemy dialect names (MSSQL's BIT and DATETIMEOFFSET,
        Oracle's CLOB and NUMBER(1), ...); keys are bounded strings, which every database indexes."""
        if self._dialect is None:
            return super().column_type(field)
        import sqlalchemy as sa

        key = field.name in (self.id_column, "batch_id")
        kinds: dict[str, sa.types.TypeEngine[Any]] = {
            # NVARCHAR(max) on MSSQL, where UnicodeText would be the deprecated NTEXT
            "string": sa.Unicode(255) if key else sa.UnicodeText().with_variant(sa.NVARCHAR(), "mssql"),
            "int64": sa.BigInteger(),
            "double": sa.Float(53), "timestamp[us, tz=UTC]": sa.DateTime(timezone=True), "bool": sa.Boolean()}
        return str(kinds[str(field.type)].compile(dialect=self._dialect))

    def write(self, batches: Iterable[pa.RecordBatch]) -> int:
        """Create or check the target, then delete and insert in one transaction; returns the rows."""
        with one_transaction(self.hook.get_conn()) as conn:
            if self.hook.supports_autocommit:  # else the DB-API default: statements open a transaction
                self.hook.set_autocommit(conn, False)
            cursor = conn.cursor()
            if not self.check_target(conn, cursor):
                for statement in self.create_target_sql(if_not_exists=False):
                    cursor.execute(statement)
            elif self.mode == "replace":
                cursor.execute(f"DELETE FROM {self.target}")
            key = self.merge_key()
            placeholder = getattr(self.hook, "placeholder", "%s")
            insert = self.hook.dialect.generate_insert_sql(
                self.target, self.schema.names, [self.quote(name) for name in self.schema.names])
            replaced: set = set()  # a key spread over two record batches is deleted once, before its first rows
            rows = 0
            for batch in coalesced(batches):
                if key is not None:
                    keys = [k for k in pc.unique(batch.column(key)).to_pylist() if k not in replaced]
                    replaced.update(keys)
                    for start in range(0, len(keys), self.ROWS_PER_DELETE):
                        part = keys[start:start + self.ROWS_PER_DELETE]
                        cursor.execute(f"DELETE FROM {self.target} WHERE {self.quote(key)} IN "
                                       f"({', '.join([placeholder] * len(part))})", part)
                cursor.executemany(insert, list(zip(*(c.to_pylist() for c in batch.columns), strict=True)))
                rows += batch.num_rows
        return rows
