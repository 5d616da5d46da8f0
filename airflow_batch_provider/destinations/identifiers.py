"""Names pasted into SQL: every identifier goes through one quoter, :func:`identifier_quoter`. In
MySQL a name in ``"`` is a string literal, so one stray ``"batch_id"`` in a DELETE would match, and
delete, every row.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from airflow_batch_provider.destinations.errors import TableSchemaError


def identifier_quoter(hook: Any) -> Callable[[str], str]:
    """Always quote, with the hook's quote characters (common.sql's ``escape_word_format``: ``"{}"``
    by default, MySqlHook's backticks, MsSqlHook's ``[{}]``, or a connection's extra), doubling the
    closing one. Not ``Dialect.escape_word``: it leaves names that are not reserved words bare (and
    PostgreSQL folds ``Mixed`` to ``mixed``), and does not double a quote inside a name."""
    form = getattr(hook, "escape_word_format", None) or '"{}"'
    close = form[-1] if form.endswith(("\"", "`", "]")) else '"'
    return lambda name: form.format(name.replace(close, close * 2))


def refuse_percent(what: str, name: str) -> None:
    """A ``%`` in a name pasted into SQL that is run with parameters: psycopg2 and mysqlclient read
    it as a placeholder, so the statement fails (after the job was paid for, at load time)."""
    if "%" in name:
        raise TableSchemaError(f"{what} {name!r} holds a '%', which drivers with %s placeholders (psycopg2, "
                               "mysqlclient) read as a placeholder; rename it. Nothing was written or submitted.")


def qualified(quote: Callable[[str], str], name: str) -> str:
    """``schema.table`` quoted part by part."""
    return ".".join(quote(part) for part in name.split("."))
