"""Where results land: database tables (one writer per dialect, a generic fallback) and Parquet.

The choice of writer lives here, above the dialects' modules, so that no module imports its own
subclasses.
"""

from __future__ import annotations

import pyarrow as pa
from airflow.providers.common.sql.hooks.sql import DbApiHook
from airflow.sdk import BaseHook

from airflow_batch_provider.destinations.duckdb import DuckDBTableWriter
from airflow_batch_provider.destinations.limits import NATIVE, UNLIMITED, DestinationLimits
from airflow_batch_provider.destinations.mysql import MySqlTableWriter
from airflow_batch_provider.destinations.postgres import PostgresTableWriter
from airflow_batch_provider.destinations.sqlite import SqliteTableWriter
from airflow_batch_provider.destinations.table import GenericTableWriter, TableWriter

# By connection type; MariaDB connections are "mysql" too.
WRITERS: dict[str, type[TableWriter]] = {"postgres": PostgresTableWriter, "duckdb": DuckDBTableWriter,
                                         "sqlite": SqliteTableWriter, "mysql": MySqlTableWriter}


def limits_for(destination: str | None) -> DestinationLimits:
    """What the destination a submit was told of can hold: ``"parquet"``, or the connection id of a
    database (its type picks the writer); None: every database this package writes to natively."""
    if destination is None:
        return NATIVE
    if destination.lower() == "parquet":
        return UNLIMITED
    conn_type = (BaseHook.get_connection(destination).conn_type or "").lower()
    return WRITERS.get(conn_type, GenericTableWriter).limits


def table_writer_for(hook: DbApiHook, table: str, mode: str, schema: pa.Schema, id_column: str,
                     **options) -> TableWriter:
    """The writer with the bulk path for the hook's database, or the generic one."""
    writer = WRITERS.get((getattr(hook, "conn_type", "") or "").lower(), GenericTableWriter)
    return writer(hook, table, mode, schema, id_column, **options)


__all__ = ["DestinationLimits", "GenericTableWriter", "TableWriter", "limits_for", "table_writer_for"]
