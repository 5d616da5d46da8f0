"""PostgreSQL: ``COPY ... FROM STDIN`` (CSV written by Arrow) into a temporary staging table, then
the merge under a transaction-scoped advisory lock on the target's qualified name.

Why an advisory lock rather than ``LOCK TABLE … IN SHARE ROW EXCLUSIVE MODE``: the lock must also
cover the first load, which creates the table (``LOCK TABLE`` needs it to exist), and it should
hold back only other loads of this provider, not every reader and writer of a warehouse table.
Rows are staged before the lock is taken, so loads overlap in their long part (downloading and
copying) and queue only for the merge.
"""

from __future__ import annotations

import io

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

from airflow_batch_provider.destinations.table import TableWriter


class PostgresTableWriter(TableWriter):
    types = {"string": "TEXT", "int64": "BIGINT", "double": "DOUBLE PRECISION",
             "timestamp[us, tz=UTC]": "TIMESTAMPTZ", "bool": "BOOLEAN"}

    def create_staging_sql(self) -> str:
        return f"CREATE TEMPORARY TABLE {self.staging} ({self.columns_ddl()}) ON COMMIT DROP"

    def lock_target(self, conn, cursor) -> None:
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

    def stage(self, conn, cursor, batch: pa.RecordBatch) -> None:
        # Inputs with NUL are refused before paying; a NUL the API itself sends back in a result
        # would fail the COPY for the whole job, so it becomes U+FFFD (the Unicode replacement mark).
        batch = pa.record_batch([pc.replace_substring(c, "\x00", "\ufffd") if pa.types.is_string(c.type) else c
                                 for c in batch.columns], schema=batch.schema)
        # Arrow quotes every string and leaves nulls empty and unquoted: exactly PostgreSQL's CSV.
        buffer = io.BytesIO()
        pa_csv.write_csv(batch, buffer, pa_csv.WriteOptions(include_header=False))
        sql = f"COPY {self.staging} ({self.column_list}) FROM STDIN WITH (FORMAT csv)"
        if hasattr(cursor, "copy"):  # psycopg 3, which the postgres provider prefers when installed
            with cursor.copy(sql) as copy:
                copy.write(buffer.getvalue())
        else:  # psycopg2
            buffer.seek(0)
            cursor.copy_expert(sql, buffer)
