"""What already landed in a destination table: the incremental runs' memory.

``BatchOutputToTableOperator`` writes each row's id and ``request_fingerprint`` (a hash of the text
and every request parameter). A row whose id landed with status ``ok`` and the same fingerprint
would cost the same request again, so the submit operators leave it out.
"""

from __future__ import annotations

from airflow.sdk import BaseHook

FETCH_ROWS = 10_000


def landed_fingerprints(conn_id: str, table: str, id_column: str) -> dict[str, str]:
    """``custom_id -> request_fingerprint`` of rows landed ``ok``; empty when the table does not exist."""
    hook = BaseHook.get_connection(conn_id).get_hook()
    conn = hook.get_conn()
    try:
        cursor = conn.cursor()
        try:
            cursor.execute(f'SELECT "{id_column}", request_fingerprint FROM {table} WHERE status = \'ok\'')
        except Exception as exc:  # noqa: BLE001 - every driver names "no such table" differently
            if not _is_missing_table(exc):
                raise
            return {}
        landed: dict[str, str] = {}
        while rows := cursor.fetchmany(FETCH_ROWS):
            landed.update((str(row_id), fingerprint) for row_id, fingerprint in rows)
        return landed
    finally:
        conn.close()


def _is_missing_table(exc: Exception) -> bool:
    text = str(exc).lower()
    return any(s in text for s in ("no such table", "does not exist", "doesn't exist", "not found",
                                   "undefinedtable", "catalog error"))
