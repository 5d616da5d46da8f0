"""The submit operators: rows from a DataFrame, Parquet or SQL become batches, paid for once.

Each says only where its rows come from (:meth:`iter_record_batches`, with :mod:`..sources`); the
rest — spool, submit, publish, wait — is their base's, :class:`~.submit_base.BaseBatchSubmitOperator`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import pyarrow as pa

from airflow_batch_provider.destinations.connection import db_hook
from airflow_batch_provider.job.errors import (
    AmbiguousSubmissionError,
    InputChangedError,
    InvalidInputError,
    InvalidRowsError,
)
from airflow_batch_provider.operators.lineage import (
    Database,
    database_of,
    ol_input,
    path_location,
    sql_lineage,
)
from airflow_batch_provider.operators.submit_base import BaseBatchSubmitOperator
from airflow_batch_provider.sources import READ_BATCH_ROWS  # read at each call: tests make it smaller
from airflow_batch_provider.sources.dataframe import FrameSummary, frame_batches
from airflow_batch_provider.sources.parquet import parquet_batches
from airflow_batch_provider.sources.sql import one_type_per_column, query_chunks

if TYPE_CHECKING:
    import pandas as pd
    from airflow.sdk import Context

__all__ = ["AmbiguousSubmissionError", "BaseBatchSubmitOperator", "DataFrameToBatchOperator", "InputChangedError",
           "InvalidInputError", "InvalidRowsError", "ParquetToBatchOperator", "SqlToBatchOperator"]


class DataFrameToBatchOperator(BaseBatchSubmitOperator):
    """Submit the rows of a pandas DataFrame.

    :param dataframe: a DataFrame, an XComArg of one (e.g. a ``@task``'s output), or a callable
        returning one; like any callable template field it is called on the worker as
        ``dataframe(context=..., jinja_env=...)``, so the frame is built where the task runs.
    """

    template_fields: Sequence[str] = (*BaseBatchSubmitOperator.template_fields, "dataframe")

    def __init__(self, *, dataframe: pd.DataFrame | Callable[..., pd.DataFrame] | Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.dataframe = dataframe

    def render_template_fields(self, context: Context, jinja_env: Any = None) -> None:
        """Render as any operator, then keep only the DataFrame's shape for the UI."""
        super().render_template_fields(context, jinja_env)
        import pandas as pd

        if isinstance(self.dataframe, pd.DataFrame):  # what the UI's rendered-templates tab will show
            self.dataframe = FrameSummary(self.dataframe)

    def iter_record_batches(self) -> Iterator[pa.RecordBatch]:
        """The DataFrame's id and text columns as record batches."""
        import pandas as pd

        frame = self.dataframe(context={}, jinja_env=None) if callable(self.dataframe) else self.dataframe
        frame = frame.frame if isinstance(frame, FrameSummary) else frame
        if not isinstance(frame, pd.DataFrame):
            raise InvalidInputError(
                f"dataframe must be a pandas DataFrame (or return one), got {type(frame).__name__}")
        yield from frame_batches(frame, [self.id_column, self.text_column], READ_BATCH_ROWS)


class ParquetToBatchOperator(BaseBatchSubmitOperator):
    """Submit the rows of a Parquet file, or of every ``*.parquet`` file under a directory.

    Read a batch at a time (only the id and text columns), so memory does not grow with the input.

    :param path: local path or object storage URI (``s3://...``, ``gs://...``, ``file://...``); templated.
    :param conn_id: object storage connection for ``path``, if it needs one.
    """

    template_fields: Sequence[str] = (*BaseBatchSubmitOperator.template_fields, "path")

    def __init__(self, *, path: str, conn_id: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.path = path
        self.conn_id = conn_id

    def source_lineage(self, rows: int) -> tuple[list[Any], dict[str, Any]]:
        """The file or folder read, with the rows read, as an OpenLineage input."""
        source = path_location(str(self.path))
        return [ol_input(source.namespace, source.name, rows=rows)], {}

    def iter_record_batches(self) -> Iterator[pa.RecordBatch]:
        """The id and text columns of the file or folder, a batch at a time."""
        yield from parquet_batches(str(self.path), self.conn_id, [self.id_column, self.text_column], READ_BATCH_ROWS)


class SqlToBatchOperator(BaseBatchSubmitOperator):
    """Submit the rows a query returns, on any ``DbApiHook`` connection, fetched in chunks.

    :param sql: the query (templated); it must return ``id_column`` and ``text_column``.
    :param conn_id: the database connection.
    :param parameters: query parameters.
    :param hook_params: keyword arguments for the connection's hook, as common.sql's operators take them.
    :param database: a database other than the connection's (PostgreSQL's database, MySQL's schema).
    """

    template_fields: Sequence[str] = (*BaseBatchSubmitOperator.template_fields, "sql", "parameters",
                                      "conn_id", "hook_params", "database")
    template_ext: Sequence[str] = (".sql",)
    template_fields_renderers: ClassVar[dict[str, str]] = {
        **BaseBatchSubmitOperator.template_fields_renderers, "sql": "sql"}

    def __init__(self, *, sql: str, conn_id: str, parameters: Iterable | dict | None = None,
                 hook_params: dict | None = None, database: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.sql = sql
        self.conn_id = conn_id
        self.parameters = parameters
        self.hook_params = hook_params
        self.database = database
        self._source_db: Database | None = None  # the query's database, for lineage

    def iter_record_batches(self) -> Iterator[pa.RecordBatch]:
        """The query's id and text columns, in chunks, one type per column."""
        hook = db_hook(self.conn_id, self.hook_params, self.database)
        self._capture_source(hook)
        chunks = query_chunks(hook, self.sql, self.parameters, READ_BATCH_ROWS)
        yield from one_type_per_column(chunks, self.id_column, self.text_column)

    def _capture_source(self, hook: Any = None) -> None:
        try:
            hook = hook or db_hook(self.conn_id, self.hook_params, self.database)
            self._source_db = database_of(hook.connection, hook)
        except Exception as exc:  # lineage must never fail the job
            self.log.warning("No lineage for the query's tables: %s", exc)
            self._source_db = None

    def source_lineage(self, rows: int) -> tuple[list[Any], dict[str, Any]]:
        """The tables the query reads, parsed from the SQL, as OpenLineage inputs."""
        return sql_lineage(self._source_db, self.sql, rows)
