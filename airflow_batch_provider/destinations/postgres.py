"""PostgreSQL: ``COPY ... FROM STDIN`` (CSV written by Arrow) into a temporary staging table."""

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
