"""The errors of landing rows in a destination, in one place (and importable from the modules that
raise them, as before)."""

from __future__ import annotations

from airflow.sdk.exceptions import AirflowFailException


class LandedTableError(ValueError):
    """The incremental lookup cannot trust the table: rows would be paid for again."""


class TableSchemaError(AirflowFailException, ValueError):
    """The existing target table cannot take the result rows; a retry would meet the same table."""


class TableLockTimeoutError(TimeoutError):
    """Another load of the same table held it longer than ``lock_timeout``; nothing was written."""
