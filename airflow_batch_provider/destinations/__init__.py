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
from airflow_batch_provider.protocol import Request
from airflow_batch_provider.tabular.results_to_columns import ResultColumns
from airflow_batch_provider.tabular.rows_to_requests import RowEncoder

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


def row_encoder_for(request: Request, id_column: str, text_column: str, max_text_bytes: int,
                    destination: str | None) -> RowEncoder:
    """A row encoder that refuses, before paying, what the load's destination could not hold: an id
    longer than its key column takes, a result column name (the id column's, one per label or entity
    type) longer than its catalog takes. ``destination`` as for :func:`limits_for`."""
    limits = limits_for(destination)
    hint = ("." if destination else
            "; or declare the load's destination (destination='<its connection id>' or 'parquet') to be "
            "checked against that database's limits alone.")
    columns = ResultColumns(model=request.model, request=request.params(), id_column=id_column,
                            id_type=pa.string(), label_scores=True, entity_columns="all")
    derived = {**{c: f"label {n!r}" for n, c in columns.label_columns.items()},
               **{c: f"entity type {n!r}" for n, c in columns.entity_columns.items()}}
    limits.check_identifiers([(name, derived.get(name, f"the id column {id_column!r}" if
                                                name == id_column else f"result column {name!r}"))
                              for name in columns.schema.names], hint)
    return RowEncoder(request, id_column, text_column, max_text_bytes,
                      max_id_chars=limits.key_chars, max_id_bytes=limits.key_bytes,
                      id_limit=limits.describe_key() + (hint.removeprefix(";") if not destination else ""))


def table_writer_for(hook: DbApiHook, table: str, mode: str, schema: pa.Schema, id_column: str,
                     **options) -> TableWriter:
    """The writer with the bulk path for the hook's database, or the generic one."""
    writer = WRITERS.get((getattr(hook, "conn_type", "") or "").lower(), GenericTableWriter)
    return writer(hook, table, mode, schema, id_column, **options)


__all__ = ["DestinationLimits", "GenericTableWriter", "TableWriter", "limits_for", "row_encoder_for",
           "table_writer_for"]
