"""DuckDB: Arrow record batches are scanned in place (no row-by-row conversion)."""

from __future__ import annotations

import pyarrow as pa

from airflow_batch_provider.destinations.table import TableWriter


class DuckDBTableWriter(TableWriter):
    types = {"string": "VARCHAR", "int64": "BIGINT", "double": "DOUBLE",
             "timestamp[us, tz=UTC]": "TIMESTAMPTZ", "bool": "BOOLEAN"}

    def begin(self, conn) -> None:
        conn.begin()

    def cursor(self, conn):
        return conn  # a DuckDB cursor() is a separate connection, outside this transaction

    def stage(self, conn, cursor, batch: pa.RecordBatch) -> None:
        cursor.register("scaledown_incoming", pa.Table.from_batches([batch]))
        cursor.execute(f"INSERT INTO {self.staging} ({self.column_list}) "
                       f"SELECT {self.column_list} FROM scaledown_incoming")
        cursor.unregister("scaledown_incoming")
