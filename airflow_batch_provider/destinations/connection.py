"""The database hook behind a connection id, as common.sql's operators build it."""

from __future__ import annotations

from typing import Any

from airflow.providers.common.sql.hooks.sql import DbApiHook
from airflow.sdk import BaseHook


def db_hook(conn_id: str, hook_params: dict[str, Any] | None = None, database: str | None = None) -> DbApiHook:
    """``hook_params`` go to the hook's constructor (e.g. ``{"local_infile": True}`` for MySqlHook's bulk
    path); ``database`` overrides the connection's, the way ``SQLExecuteQueryOperator`` does it:
    PostgresHook takes ``database``, the other hooks ``schema``."""
    connection = BaseHook.get_connection(conn_id)
    params = dict(hook_params or {})
    if database:
        params.setdefault("database" if connection.conn_type in ("postgres", "postgresql") else "schema", database)
    hook = connection.get_hook(hook_params=params)
    if not isinstance(hook, DbApiHook):
        raise TypeError(f"connection {conn_id!r} ({connection.conn_type}) is not a SQL database's: its hook "
                        f"{type(hook).__name__} is not a common.sql DbApiHook")
    return hook
