"""What already landed in a destination table: the incremental runs' memory.

``BatchOutputToTableOperator`` writes each row's id and ``request_fingerprint`` (a hash of the text
and every request parameter). A row whose id landed with status ``ok`` and the same fingerprint
would cost the same request again, so the submit operators leave it out.

The table is looked up in the database's catalog (SQLAlchemy's inspector), and every identifier is
quoted the one way the writers quote it: a name is never pasted into SQL as
text, a table that exists under another case is an error that names it, and only a table the
catalog does not know is "nothing landed yet".
"""

from __future__ import annotations

from sqlalchemy import inspect

from airflow.sdk import BaseHook
from airflow_batch_provider.destinations.table import quote, quote_table

FETCH_ROWS = 10_000
NEEDED = ("status", "request_fingerprint")


class LandedTableError(ValueError):
    """The incremental lookup cannot trust the table: rows would be paid for again."""


def _split(table: str) -> tuple[str | None, str]:
    parts = table.split(".")
    if len(parts) > 2 or not all(parts):
        raise LandedTableError(f"skip_landed_table must be 'table' or 'schema.table', got {table!r}")
    return (None, parts[0]) if len(parts) == 1 else (parts[0], parts[1])


def landed_fingerprints(conn_id: str, table: str, id_column: str) -> dict[str, str]:
    """``custom_id -> request_fingerprint`` of rows landed ``ok``; empty when the table does not exist."""
    hook = BaseHook.get_connection(conn_id).get_hook()
    schema, name = _split(table)
    engine = hook.get_sqlalchemy_engine()
    try:  # disposed at once: DuckDB refuses a second connection to a file with other settings
        inspector = inspect(engine)
        exists = inspector.has_table(name, schema=schema)
        alike = [] if exists else [t for t in inspector.get_table_names(schema=schema)
                                   if t.casefold() == name.casefold()]
    finally:
        engine.dispose()
    if not exists:
        if alike:
            raise LandedTableError(
                f"skip_landed_table {table!r} does not exist, but {alike[0]!r} does (table names are "
                f"case-sensitive in this database); name it exactly, or every row would be paid for again")
        return {}
    conn = hook.get_conn()
    try:
        cursor = conn.cursor()
        # The columns as the driver reports them (the inspector's get_columns is not implemented
        # for every dialect, e.g. duckdb_engine); the name is quoted, never pasted.
        cursor.execute(f"SELECT * FROM {quote_table(table)} WHERE 1 = 0")
        columns = [d[0] for d in cursor.description]
        missing = [c for c in (id_column, *NEEDED) if c not in columns]
        if missing:
            raise LandedTableError(
                f"skip_landed_table {table!r} has no column {', '.join(map(repr, missing))}; its columns are "
                f"{', '.join(columns)}. Point it at a table BatchOutputToTableOperator loaded, with the same "
                "id column")
        cursor.execute(f"SELECT {quote(id_column)}, {quote('request_fingerprint')} FROM {quote_table(table)} "
                       f"WHERE {quote('status')} = 'ok'")
        landed: dict[str, str] = {}
        while rows := cursor.fetchmany(FETCH_ROWS):
            landed.update((str(row_id), fingerprint) for row_id, fingerprint in rows)
        return landed
    finally:
        conn.close()
