"""MySQL and MariaDB: rows staged in a session's TEMPORARY table, merged in one InnoDB transaction.

What MySQL can promise, since every DDL statement (CREATE TABLE, CREATE INDEX, ALTER TABLE, even on
a temporary table, and a plain DROP TABLE of one) commits implicitly:

- **An existing table** is changed atomically. Staging is a ``TEMPORARY`` table, private to the
  session, whose ``CREATE TEMPORARY TABLE`` and ``DROP TEMPORARY TABLE`` do not commit; the merge
  (``DELETE`` + ``INSERT … SELECT``) commits once. Readers see the old rows or all the new ones.
- **A table's first load** creates it (the upsert's unique key declared inside ``CREATE TABLE``: one
  statement, one implicit commit), so other sessions see it at once, empty; its rows then go in one
  transaction that commits at the end. A failed first load leaves that empty table; the retry
  merges into it.
- Loads of one table queue on ``GET_LOCK`` (a session lock, freed when the load's connection closes),
  for at most ``lock_timeout``.

**Bulk path**: with ``hook_params={"local_infile": True}`` and the server's ``local_infile`` on (the
default in MariaDB, not in MySQL 8), each record batch goes in by ``LOAD DATA LOCAL INFILE`` from a
CSV file Arrow writes, about six times faster than ``executemany``. ``LOCAL`` turns data errors into
warnings (a truncated string, a skipped duplicate), so any warning fails the load.
"""

from __future__ import annotations

import hashlib
import math
import tempfile
from typing import Any

import pyarrow as pa
import pyarrow.csv as pa_csv

from airflow_batch_provider.destinations.limits import MYSQL
from airflow_batch_provider.destinations.table import TableWriter

STATEMENT_BYTES = 2 << 20  # an executemany statement's data: far below max_allowed_packet (16-64 MB)


class MySqlTableWriter(TableWriter):
    """MySQL/MariaDB: a TEMPORARY staging table filled by ``LOAD DATA LOCAL INFILE`` (or batched
    INSERTs), merged under ``GET_LOCK``."""
    types = {"string": "LONGTEXT", "int64": "BIGINT", "double": "DOUBLE",
             "timestamp[us, tz=UTC]": "DATETIME(6)", "bool": "BOOLEAN"}  # DATETIME(6) holds UTC wall time
    index_after_rows = False  # CREATE INDEX commits: the unique key is declared in CREATE TABLE
    limits = MYSQL

    def column_type(self, field: pa.Field) -> str:
        """The column's type; string keys become bounded VARCHARs with a binary, no-pad collation."""
        # Keys cannot be TEXT; 768 characters x 4 bytes is InnoDB's 3072-byte key limit in utf8mb4.
        # A binary, no-pad collation: under the usual default (utf8mb4_general_ci) 'a1' = 'A1' = 'á1',
        # and under PAD SPACE ones 'a1' = 'a1 ', so an upsert of one id would delete another's row and
        # the unique key would refuse distinct ids.
        if pa.types.is_string(field.type) and field.name in (self.id_column, "batch_id"):
            length = 768 if field.name == self.id_column else 255
            return f"VARCHAR({length}) CHARACTER SET utf8mb4 COLLATE {self.key_collation}"
        return super().column_type(field)

    def create_target_sql(self, if_not_exists: bool = True) -> list[str]:
        """CREATE TABLE in utf8mb4 InnoDB, with the unique key declared inside it for an upsert table."""
        unique = ""
        if self.mode == "upsert":
            name = "scaledown_uq_" + hashlib.blake2b(self.table.encode(), digest_size=6).hexdigest()
            unique = f", UNIQUE KEY {self.quote(name)} ({self.quote(self.id_column)})"
        return [f"CREATE TABLE {'IF NOT EXISTS ' if if_not_exists else ''}{self.target} "
                f"({self.columns_ddl()}{unique}) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"]  # not the server's

    def create_staging_sql(self) -> str:
        """A TEMPORARY staging table, indexed on the merge key."""
        # The merge key's index is declared here (ALTER would commit); without it MariaDB runs
        # DELETE … IN (SELECT …) as a dependent subquery, quadratic in the rows.
        key = self.merge_key()
        index = f", KEY ({self.quote(key)})" if key else ""
        return (f"CREATE TEMPORARY TABLE {self.staging} ({self.columns_ddl()}{index}) "
                "ENGINE=InnoDB DEFAULT CHARSET=utf8mb4")

    def drop_staging_sql(self) -> str:
        """DROP TEMPORARY TABLE, which does not commit."""
        return f"DROP TEMPORARY TABLE {self.staging}"  # a plain DROP TABLE would commit

    def begin(self, conn: Any) -> None:
        """Turn autocommit off and learn the database, the key collation and whether LOAD DATA may be used."""
        self.hook.set_autocommit(conn, False)
        cursor = conn.cursor()
        cursor.execute("SELECT DATABASE(), @@GLOBAL.local_infile")
        self.database, server_infile = cursor.fetchone()
        # MariaDB's utf8mb4_nopad_bin, MySQL 8's utf8mb4_0900_bin; utf8mb4_bin pads (MySQL 5.7).
        cursor.execute("SELECT collation_name FROM information_schema.collations WHERE collation_name IN "
                       "('utf8mb4_nopad_bin', 'utf8mb4_0900_bin', 'utf8mb4_bin') "
                       "ORDER BY FIELD(collation_name, 'utf8mb4_nopad_bin', 'utf8mb4_0900_bin', 'utf8mb4_bin')")
        self.key_collation = cursor.fetchall()[0][0]
        cursor.close()
        self.load_data = bool(getattr(self.hook, "local_infile", False) and server_infile)

    def existing_columns(self, conn: Any, cursor: Any) -> list[str] | None:
        """The target's columns from information_schema, or None when it does not exist."""
        # The data dictionary: no failing statement, nothing to roll back.
        schema, _, name = self.table.rpartition(".")
        cursor.execute("SELECT column_name FROM information_schema.columns WHERE table_schema = "
                       "COALESCE(%s, DATABASE()) AND table_name = %s ORDER BY ordinal_position",
                       (schema or None, name))
        return [row[0] for row in cursor.fetchall()] or None

    def lock_target(self, conn: Any, cursor: Any) -> None:
        """Take the table's named lock (``GET_LOCK``), waiting up to ``lock_timeout``."""
        schema, _, name = self.table.rpartition(".")
        # MySQL limits lock names to 64 characters: a hash of the qualified name.
        key = "scaledown:" + hashlib.blake2b(f"{schema or self.database}.{name}".encode(),
                                             digest_size=16).hexdigest()

        def take(timeout: float) -> bool:
            cursor.execute("SELECT GET_LOCK(%s, %s)", (key, timeout))
            return cursor.fetchone()[0] == 1  # 0: timed out; NULL: an error (the session was killed)

        def wait() -> None:
            if not take(-1 if self.lock_timeout is None else math.ceil(self.lock_timeout)):
                raise TimeoutError(f"GET_LOCK({key!r}) timed out")

        self.waiting(lambda: take(0), wait)

    def stage(self, conn: Any, cursor: Any, batch: pa.RecordBatch, table: str) -> None:
        """Write one record batch into ``table``: LOAD DATA when allowed, else INSERTs of bounded size."""
        if self.load_data:
            self._load_data(cursor, batch, table)
            return
        sql = f"INSERT INTO {table} ({self.column_list}) VALUES ({', '.join(['%s'] * batch.num_columns)})"
        step = max(1, STATEMENT_BYTES // max(1, batch.nbytes // max(1, batch.num_rows)))
        for start in range(0, batch.num_rows, step):
            part = batch.slice(start, step)
            cursor.executemany(sql, list(zip(*(c.to_pylist() for c in part.columns), strict=True)))

    def _load_data(self, cursor: Any, batch: pa.RecordBatch, table: str) -> None:
        columns = [c.cast(pa.timestamp("us")) if pa.types.is_timestamp(c.type)  # UTC wall time
                   else c.cast(pa.int8()) if pa.types.is_boolean(c.type) else c for c in batch.columns]
        with tempfile.NamedTemporaryFile(prefix="scaledown-mysql-", suffix=".csv") as csv:
            # Strings quoted ("" inside), NULL bare and so read as NULL; ESCAPED BY '': backslashes are data.
            pa_csv.write_csv(pa.record_batch(columns, names=batch.schema.names), csv,
                             pa_csv.WriteOptions(include_header=False, null_string="NULL"))
            csv.flush()
            cursor.execute(f"LOAD DATA LOCAL INFILE %s INTO TABLE {table} CHARACTER SET utf8mb4 "
                           "FIELDS TERMINATED BY ',' OPTIONALLY ENCLOSED BY '\"' ESCAPED BY '' "
                           f"LINES TERMINATED BY '\\n' ({self.column_list})", (csv.name,))
        if cursor.warning_count:  # LOCAL turns data errors and duplicate keys into warnings: refuse them
            cursor.execute("SHOW WARNINGS LIMIT 3")
            raise ValueError(f"LOAD DATA into {table} reported warnings (nothing was committed): "
                             f"{cursor.fetchall()}")
