"""PostgreSQL: ``COPY ... FROM STDIN`` (CSV written by Arrow) into a temporary staging table, then
the merge under a transaction-scoped advisory lock on the target's qualified name.

Why an advisory lock rather than ``LOCK TABLE … IN SHARE ROW EXCLUSIVE MODE``: the lock must also
cover the first load, which creates the table (``LOCK TABLE`` needs it to exist), and it should
hold back only other loads of this provider, not every reader and writer of a warehouse table.
Rows are staged before the lock is taken, so loads overlap in their long part (downloading and
copying) and queue only for the merge; a table's first load, which creates it and copies its rows
straight in, holds the lock from the start.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

from airflow_batch_provider.destinations.limits import POSTGRES
from airflow_batch_provider.destinations.table import TableWriter
from airflow_batch_provider.tabular.record_batches import iso_text


class PostgresTableWriter(TableWriter):
    """PostgreSQL: ``COPY`` into a staging table, merged under a transaction-scoped advisory lock."""
    types = {"string": "TEXT", "int64": "BIGINT", "double": "DOUBLE PRECISION",
             "timestamp[us, tz=UTC]": "TIMESTAMPTZ", "bool": "BOOLEAN"}
    index_after_rows = True
    limits = POSTGRES

    def create_staging_sql(self) -> str:
        """A temporary staging table dropped at commit."""
        return f"CREATE TEMPORARY TABLE {self.staging} ({self.columns_ddl()}) ON COMMIT DROP"

    def lock_target(self, conn, cursor) -> None:
        """Take the table's advisory lock for this transaction, waiting up to ``lock_timeout``."""
        schema, _, name = self.table.rpartition(".")
        key = "hashtextextended(current_database() || '.' || coalesce(%s, current_schema()) || '.' || %s, 0)"
        params = (schema or None, name)

        def now() -> bool:
            cursor.execute(f"SELECT pg_try_advisory_xact_lock({key})", params)
            return bool(cursor.fetchone()[0])

        def waiting() -> None:
            if self.lock_timeout is not None:  # SET LOCAL: this transaction only
                cursor.execute(f"SET LOCAL lock_timeout = {int(self.lock_timeout * 1000)}")
            cursor.execute(f"SELECT pg_advisory_xact_lock({key})", params)

        self.waiting(now, waiting)

    def existing_columns(self, conn, cursor) -> list[str] | None:
        """The target's columns from the catalog, or None when it does not exist."""
        # Asked of pg_class: a failed SELECT would abort the transaction (and drop the lock), and
        # to_regclass() may not yet see a table another load created while this one waited for the
        # lock. (Under REPEATABLE READ the snapshot is older still; the direct path's plain CREATE
        # TABLE then fails rather than writing into a table it did not create.)
        schema, _, name = self.table.rpartition(".")
        cursor.execute("SELECT count(*) FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n "
                       "ON n.oid = c.relnamespace WHERE c.relname = %s AND "
                       "(n.nspname = %s OR (%s::text IS NULL AND pg_catalog.pg_table_is_visible(c.oid)))",
                       (name, schema or None, schema or None))
        if not cursor.fetchone()[0]:
            return None
        cursor.execute(f"SELECT * FROM {self.target} WHERE 1 = 0")
        return [d[0] for d in cursor.description]

    def stage_all(self, conn, cursor, batches: Iterable[pa.RecordBatch], table: str) -> int:
        """COPY every batch into ``table`` (psycopg 3: one COPY fed by a thread); returns the rows."""
        sql = f"COPY {table} ({self.column_list}) FROM STDIN WITH (FORMAT csv)"
        if not hasattr(cursor, "copy"):  # psycopg2: a COPY per batch
            return super().stage_all(conn, cursor, batches, table)
        # psycopg 3 (which the postgres provider prefers when installed): one COPY for the whole
        # load, fed by a thread that writes each record batch as CSV and sends it (Arrow and the
        # socket release the GIL), while this one goes on reading and typing the next batch and
        # the server ingests the one before.
        with cursor.copy(sql) as copy, ThreadPoolExecutor(1, thread_name_prefix="scaledown-copy") as sender:
            rows, sending = 0, None
            for batch in batches:
                if sending is not None:
                    sending.result()
                sending = sender.submit(lambda b: copy.write(_csv(b)), batch)
                rows += batch.num_rows
            if sending is not None:
                sending.result()
        return rows

    def stage(self, conn, cursor, batch: pa.RecordBatch, table: str) -> None:
        """COPY one record batch into ``table`` as CSV (psycopg2)."""
        buffer = io.BytesIO(_csv(batch))
        cursor.copy_expert(f"COPY {table} ({self.column_list}) FROM STDIN WITH (FORMAT csv)", buffer)


def _csv(batch: pa.RecordBatch) -> bytes:
    # Inputs with NUL are refused before paying; a NUL the API itself sends back in a result
    # would fail the COPY for the whole job, so it becomes U+FFFD (the Unicode replacement mark).
    columns = [pc.replace_substring(c, "\x00", "\ufffd") if _has_nul(c)
               else iso_text(c) if pa.types.is_timestamp(c.type) else c for c in batch.columns]
    batch = pa.record_batch(columns, names=batch.schema.names)
    # Arrow quotes every string and leaves nulls empty and unquoted: exactly PostgreSQL's CSV.
    buffer = io.BytesIO()
    pa_csv.write_csv(batch, buffer, pa_csv.WriteOptions(include_header=False))
    return buffer.getvalue()


def _has_nul(column: pa.Array) -> bool:
    return pa.types.is_string(column.type) and pc.any(pc.match_substring(column, "\x00")).as_py() is True
