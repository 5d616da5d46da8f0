"""Where results land: database tables (one writer per dialect, a generic fallback) and Parquet.

The choice of writer lives here, above the dialects' modules, so that no module imports its own
subclasses.
"""

from __future__ import annotations

import pyarrow as pa
from airflow.providers.common.sql.hooks.sql import DbApiHook

from airflow_batch_provider.destinations.duckdb import DuckDBTableWriter
from airflow_batch_provider.destinations.mysql import MySqlTableWriter
from airflow_batch_provider.destinations.postgres import PostgresTableWriter
from airflow_batch_provider.destinations.sqlite import SqliteTableWriter
from airflow_batch_provider.destinations.table import GenericTableWriter, TableWriter

# By connection type; MariaDB connections are "mysql" too.
WRITERS: dict[str, type[TableWriter]] = {"postgres": PostgresTableWriter, "duckdb": DuckDBTableWriter,
                                         "sqlite": SqliteTableWriter, "mysql": MySqlTableWriter}


def table_writer_for(hook: DbApiHook, table: str, mode: str, schema: pa.Schema, id_column: str,
                     **options) -> TableWriter:
    """The writer with the bulk path for the hook's database, or the generic one."""
    writer = WRITERS.get((getattr(hook, "conn_type", "") or "").lower(), GenericTableWriter)
    return writer(hook, table, mode, schema, id_column, **options)


__all__ = ["GenericTableWriter", "TableWriter", "table_writer_for"]
