"""DuckDB: rows are staged in a local Parquet file, then merged in one transaction that scans it.

DuckDB lets one process at a time open a database file for writing, so a load holds the file only
for its merge: the rows (which stream in as slowly as the API serves them) go to a temporary
Parquet file first, written a record batch at a time, so memory stays flat whatever the job's size.
A load that finds the file held by another waits for it (logging so), up to ``lock_timeout``.
"""

from __future__ import annotations

import os
import re
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from airflow_batch_provider.destinations.limits import DUCKDB
from airflow_batch_provider.destinations.table import TableWriter, one_transaction
from airflow_batch_provider.tabular.record_batches import coalesced

MEMORY_LIMIT = "256MB"  # DuckDB's buffer for the merge; the rest spills to disk
RETRY_OPEN_EVERY = 0.2  # seconds between tries to open a database file another process holds
HEADER_BYTES = 3 * 4096  # a DuckDB file's main header and its two database headers
_INVALID_FILE = re.compile(r'The file "(.+)" exists, but it is not a valid DuckDB database file')
CREATING_SECONDS = 10.0  # a creator writes the headers within milliseconds; an older short file is not being made


def _is_held(exc: Exception) -> bool:
    message = str(exc)
    if "could not set lock" in message.lower() or "conflicting lock" in message.lower():
        return True
    # Two loads of a new file: one creates it, and the other may open it before its headers are
    # written, which DuckDB reports as an invalid file. Any other file that is not DuckDB (a whole
    # one, or a short one nobody is writing) is refused at once. The path is the one DuckDB opened
    # (``~`` expanded, any ``duckdb:`` prefix gone).
    invalid = _INVALID_FILE.search(message)
    return invalid is not None and _being_created(invalid.group(1))


def _being_created(path: str) -> bool:
    """A file shorter than DuckDB's headers, modified in the last few seconds: its creator is writing them."""
    try:
        stat = os.stat(path)
    except OSError:  # gone again (its creator gave up): the next try creates it, or says why not
        return True
    return stat.st_size < HEADER_BYTES and 0 <= time.time() - stat.st_mtime < CREATING_SECONDS


class DuckDBTableWriter(TableWriter):
    """DuckDB: rows staged in a local Parquet file, merged in one transaction that holds the file briefly."""
    types = {"string": "VARCHAR", "int64": "BIGINT", "double": "DOUBLE",
             "timestamp[us, tz=UTC]": "TIMESTAMPTZ", "bool": "BOOLEAN"}
    limits = DUCKDB

    def write(self, batches: Iterable[pa.RecordBatch]) -> int:
        """Stage every row in Parquet, then open the file (waiting while another load holds it) and
        merge; returns the rows."""
        self._check_before_staging()
        rows = 0
        with tempfile.TemporaryDirectory(prefix="scaledown-duckdb-") as tmp:
            staged = Path(tmp) / "staging.parquet"
            with pq.ParquetWriter(staged, self.schema) as writer:
                for batch in coalesced(batches):  # a Parquet row group per staging step
                    writer.write_batch(batch)
                    rows += batch.num_rows
            with one_transaction(self._connect()) as conn:
                # Flat memory: past this DuckDB spills to its temporary directory instead of growing.
                conn.execute(f"SET memory_limit = '{MEMORY_LIMIT}'")
                conn.begin()
                exists = self.check_target(conn, conn)
                path = str(staged).replace("'", "''")
                conn.execute(f"CREATE TEMPORARY VIEW {self.staging} AS SELECT * FROM read_parquet('{path}')")
                for statement in ([] if exists else self.create_target_sql()) + self.merge_sql():
                    conn.execute(statement)
                conn.execute(f"DROP VIEW {self.staging}")
        return rows

    def _check_before_staging(self) -> None:
        """Refuse a target that cannot take the rows before downloading anything."""
        conn = self._connect()
        try:
            conn.begin()
            self.check_target(conn, conn)
            conn.rollback()
        finally:
            conn.close()

    def _connect(self) -> Any:
        """A connection to the database file, waiting while another process holds it."""
        held: list[Exception] = []

        def now() -> bool:
            try:
                self._conn = self.hook.get_conn()
            except Exception as exc:
                if not _is_held(exc):
                    raise
                held.append(exc)
                return False
            return True

        def waiting() -> None:
            deadline = None if self.lock_timeout is None else time.monotonic() + self.lock_timeout
            while not now():
                if deadline is not None and time.monotonic() >= deadline:
                    raise held[-1]
                time.sleep(RETRY_OPEN_EVERY)

        self.waiting(now, waiting)
        return self._conn

    def begin(self, conn) -> None:
        """Open DuckDB's explicit transaction."""
        conn.begin()
