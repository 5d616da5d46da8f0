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
from sqlalchemy.sql import quoted_name

from airflow_batch_provider.destinations.connection import db_hook
from airflow_batch_provider.destinations.errors import (
    LandedTableError as LandedTableError,
)
from airflow_batch_provider.destinations.identifiers import identifier_quoter, qualified
from airflow_batch_provider.tabular.columns import require_columns

QUESTION_IDS = 1000  # ids per query: under every driver's limit on bound parameters
NEEDED = ("status", "request_fingerprint")


def _split(table: str) -> tuple[str | None, str]:
    parts = table.split(".")
    if len(parts) > 2 or not all(parts):
        raise LandedTableError(f"skip_landed_table must be 'table' or 'schema.table', got {table!r}")
    return (None, parts[0]) if len(parts) == 1 else (parts[0], parts[1])


class LandedRows:
    """The destination's landed ``ok`` rows, asked about a batch of ids at a time: memory holds one
    batch's answer, whatever the table's size (an index on the id column makes each question a
    lookup; tables created by an ``upsert`` load have one). Use as a context manager."""

    def __init__(self, conn_id: str, table: str, id_column: str, *, hook_params: dict | None = None,
                 database: str | None = None) -> None:
        self.hook = db_hook(conn_id, hook_params, database)
        quote = identifier_quoter(self.hook)
        self.table = table
        self.id_column = id_column
        self._conn = None
        if _exists(self.hook, table):  # the catalog first: its engine is gone before we connect
            self._conn = self.hook.get_conn()
            try:
                _check_columns(self._conn.cursor(), qualified(quote, table), table, id_column)
            except BaseException:
                self._conn.close()
                raise
        self._placeholder = getattr(self.hook, "placeholder", "%s")
        self._sql = (f"SELECT {quote(id_column)}, {quote('request_fingerprint')} FROM {qualified(quote, table)} "
                     f"WHERE {quote('status')} = 'ok' AND {quote(id_column)} IN ({{}})")

    def __enter__(self) -> LandedRows:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._conn is not None:
            self._conn.close()

    def fingerprints(self, ids: list) -> dict[str, str]:
        """``custom_id -> request_fingerprint`` of those of ``ids`` that landed ``ok``."""
        if self._conn is None or not ids:
            return {}
        found: dict[str, str] = {}
        cursor = self._conn.cursor()
        for start in range(0, len(ids), QUESTION_IDS):
            part = ids[start:start + QUESTION_IDS]
            cursor.execute(self._sql.format(", ".join([self._placeholder] * len(part))), part)
            found.update((str(row_id), fingerprint) for row_id, fingerprint in cursor.fetchall())
        return found


def _exists(hook, table: str) -> bool:
    """Whether the table exists, per the database's catalog; an error when it exists in another case."""
    schema, name = _split(table)
    # Looked up exactly as the writers quote it (Oracle and Snowflake would upper-case a plain name).
    name = quoted_name(name, quote=True)
    schema = quoted_name(schema, quote=True) if schema else None
    engine = hook.get_sqlalchemy_engine()
    try:  # disposed at once: DuckDB refuses a second connection to a file with other settings
        inspector = inspect(engine)
        exists = inspector.has_table(name, schema=schema)
        alike = [] if exists else [t for t in inspector.get_table_names(schema=schema)
                                   if t.casefold() == name.casefold()]
    finally:
        engine.dispose()
    if alike:
        raise LandedTableError(
            f"skip_landed_table {table!r} does not exist, but {alike[0]!r} does (table names are "
            f"case-sensitive in this database); name it exactly, or every row would be paid for again")
    return exists


def _check_columns(cursor, quoted: str, table: str, id_column: str) -> None:
    # The columns as the driver reports them (the inspector's get_columns is not implemented for
    # every dialect, e.g. duckdb_engine); the name is quoted, never pasted.
    cursor.execute(f"SELECT * FROM {quoted} WHERE 1 = 0")
    columns = [d[0] for d in cursor.description]
    cursor.fetchall()  # mysql-connector refuses the next statement while a result is unread
    require_columns(f"skip_landed_table {table!r}", (id_column, *NEEDED), columns, LandedTableError,
                    "Point it at a table BatchOutputToTableOperator loaded, with the same id column")
