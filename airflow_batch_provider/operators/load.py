"""Load operators: stream a job's results back and land every row, typed, exactly once.

Both operators share :class:`BaseBatchOutputOperator` (which reads, types and accounts for the rows)
and differ only in where the rows go. After landing, counts are reconciled with the manifest and
``max_failed_ratio`` is checked: the task fails *after* landing, so what succeeded is kept.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pyarrow as pa
from airflow.sdk import AssetAlias, BaseOperator, ObjectStoragePath
from airflow.sdk.exceptions import AirflowException

from airflow_batch_provider.destinations import table_writer_for
from airflow_batch_provider.destinations.connection import db_hook
from airflow_batch_provider.destinations.identifiers import refuse_percent
from airflow_batch_provider.destinations.parquet import write_parquet
from airflow_batch_provider.destinations.table import MODES
from airflow_batch_provider.job.load_report import SHOWN_FAILED_ROWS, LoadReport
from airflow_batch_provider.job.manifest import JobManifest, read_manifest
from airflow_batch_provider.job.output_spool import OutputSpool
from airflow_batch_provider.job.reconcile import Reconciliation
from airflow_batch_provider.operators.errors import (
    IncrementalModeError as IncrementalModeError,
    TooManyFailedRowsError as TooManyFailedRowsError,
)
from airflow_batch_provider.operators.lineage import Location, database_of, ol_input, ol_output, path_location
from airflow_batch_provider.tabular.results_to_columns import ResultColumns

if TYPE_CHECKING:
    from airflow.sdk import Context


DEFAULT_LOCK_TIMEOUT = 3600.0  # seconds a load waits for another load of its table, without execution_timeout


def refuse_incremental_mode(skipped_against: Mapping[str, Any] | None, *, conn_id: str, table: str,
                            database: str | None, mode: str) -> None:
    """``replace`` of the table an incremental submit skipped against deletes the rows it left out
    (paid for by an earlier run, and paid for again by the next); ``append`` keeps a changed row's
    stale result beside its new one. Only ``upsert`` keeps that table whole."""
    if not skipped_against or mode == "upsert":
        return
    same = (skipped_against.get("conn_id") == conn_id and str(skipped_against.get("table")) == str(table)
            and skipped_against.get("database") == database)
    if same:
        what = ("delete the rows it left out because they had landed (the next run would pay for them again)"
                if mode == "replace" else
                "keep the old result of every changed row beside its new one (two rows for one id)")
        raise IncrementalModeError(
            f"table {table!r} on {conn_id!r} is the one the submit skipped landed rows against "
            f"(skip_landed_table): mode={mode!r} would {what}. Use mode='upsert' for an incremental job, or "
            "load into another table.")


class BaseBatchOutputOperator(BaseOperator):
    """
    :param job: the submit operator's output (its XCom job reference).
    :param max_failed_ratio: largest share of rows allowed to be ``error`` or ``missing`` (default 0:
        any failed row fails the task, after landing).
    :param label_scores: classify: one ``score_<label>`` column per label.
    :param entity_columns: extract: one ``entity_<type>`` column per requested type, holding the
        ``"first"`` value or ``"all"`` values (JSON list); None for just the ``entities`` JSON.
    :param max_concurrent_downloads: batches whose status and output are fetched at once (each is
        a network round trip); memory holds at most this many batches.
    :param log_failed_rows: failed rows (id, status, error code, message) shown in the task log
        after the load; 0: none, where task logs are read more widely than the table.
    """

    template_fields: Sequence[str] = ("job",)
    ui_color = "#e6f4ea"  # beside the submit's blue and the sensor's amber: the rows have landed

    def __init__(self, *, job: Any, max_failed_ratio: float = 0.0, label_scores: bool = False,
                 entity_columns: str | None = None, max_concurrent_downloads: int = 8,
                 log_failed_rows: int = SHOWN_FAILED_ROWS, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if log_failed_rows < 0:
            raise ValueError(f"log_failed_rows must be >= 0, got {log_failed_rows}")
        self.log_failed_rows = log_failed_rows
        if max_concurrent_downloads < 1:
            raise ValueError(f"max_concurrent_downloads must be >= 1, got {max_concurrent_downloads}")
        self.max_concurrent_downloads = max_concurrent_downloads
        if not 0.0 <= max_failed_ratio <= 1.0:
            raise ValueError(f"max_failed_ratio must be within [0, 1], got {max_failed_ratio}")
        if entity_columns not in (None, "first", "all"):
            raise ValueError(f"entity_columns must be None, 'first' or 'all', got {entity_columns!r}")
        self.job = job
        self.max_failed_ratio = max_failed_ratio
        self.label_scores = label_scores
        self.entity_columns = entity_columns

    def land(self, batches: Iterator[pa.RecordBatch], columns: ResultColumns) -> int:
        """Write the rows and return how many landed (each destination's own way)."""
        raise NotImplementedError

    def destination(self) -> Location | None:
        """Where the rows went, as an asset and a lineage dataset; None when it has no lasting name."""
        raise NotImplementedError

    def check_manifest(self, manifest: JobManifest) -> None:
        """Refuse, before anything is written, a job this destination cannot land as asked."""

    def execute(self, context: Context) -> dict[str, Any]:
        """Read every batch's output into the spool, land every row once, and report the counts."""
        manifest, location = read_manifest(self.job)
        self.check_manifest(manifest)
        columns = ResultColumns(model=manifest.model, request=manifest.request, id_column=manifest.id_column,
                                id_type=pa.type_for_alias(manifest.id_type), label_scores=self.label_scores,
                                entity_columns=self.entity_columns)
        with OutputSpool(manifest.job_id) as spool:
            reconciliation = Reconciliation(manifest.batch_api_conn_id, manifest, location, columns, self.log, spool,
                                            concurrency=self.max_concurrent_downloads)
            reconciliation.download()  # every batch, before the destination is touched
            report = LoadReport(manifest.id_column, self.log_failed_rows)
            landed = self.land(report.watch(iter(reconciliation)), columns)
            if spool.discard():
                self.log.debug("Removed the job's spool %s", spool.path)
        counts = reconciliation.counts
        if counts.rows != manifest.total_rows or landed != manifest.total_rows:
            raise AirflowException(
                f"job {manifest.job_id}: accounted for {counts.rows} rows and landed {landed}, but the manifest "
                f"lists {manifest.total_rows}; this is a bug, please report it")
        summary: dict[str, Any] = {"job_id": manifest.job_id, **counts.as_dict(),
                                   "invalid_rows": manifest.invalid_rows}
        self.log.info("Job %s landed: %s\n%s", manifest.job_id, counts.describe(), report.summary(counts))
        if (failed_rows := report.failed_table(counts)) is not None:
            self.log.warning("Job %s: %s", manifest.job_id, failed_rows)
        target = self.destination()
        self._landed = (target, landed, columns.schema, str(location), manifest.total_rows)
        if "outlet_events" in context:  # lineage: the counts travel with the asset event
            for outlet in self.outlets:
                if not isinstance(outlet, AssetAlias):
                    context["outlet_events"][outlet].extra = summary
                elif target is not None:  # the table's own URI is known only now (host, database, schema)
                    context["outlet_events"][outlet].add(target.asset(), extra=summary)
        failed = counts.error + counts.missing
        if counts.rows and failed / counts.rows > self.max_failed_ratio:
            raise TooManyFailedRowsError(
                f"job {manifest.job_id}: {failed} of {counts.rows} rows failed ({counts.error} error, "
                f"{counts.missing} missing), more than max_failed_ratio={self.max_failed_ratio}. All rows were "
                "landed with their status; re-submitting only the failed ones is a new job.")
        return summary

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """Input: the job's manifest (the submit task's output), with its rows; output: the table or
        file, with the rows landed and their schema. Also after a ``max_failed_ratio`` failure,
        which comes after landing."""
        from airflow.providers.openlineage.extractors import OperatorLineage

        if getattr(self, "_landed", None) is None:  # failed before landing: nothing written
            return None
        target, rows, schema, manifest, total = self._landed
        job = path_location(manifest)
        files = 1 if isinstance(self, BatchOutputToParquetOperator) else None
        return OperatorLineage(inputs=[ol_input(job.namespace, job.name, rows=total)],
                               outputs=[ol_output(target, rows, schema, files)] if target else [])


class BatchOutputToTableOperator(BaseBatchOutputOperator):
    """Land the results in a table of any ``DbApiHook`` database, atomically and idempotently.

    :param conn_id: the database connection.
    :param table: the target table (``schema.table`` allowed); created when it does not exist.
    :param mode: ``"append"`` (default), ``"replace"`` or ``"upsert"`` (by the job's id column).
    :param hook_params: keyword arguments for the connection's hook, as common.sql's operators take
        them (e.g. ``{"local_infile": True}`` for MySQL's bulk path).
    :param database: a database other than the connection's (PostgreSQL's database, MySQL's schema).
    """

    template_fields: Sequence[str] = (*BaseBatchOutputOperator.template_fields, "conn_id", "table", "mode",
                                      "hook_params", "database")

    def __init__(self, *, conn_id: str, table: str, mode: str = "append", hook_params: dict | None = None,
                 database: str | None = None, **kwargs: Any) -> None:
        if mode not in MODES and "{{" not in mode:  # a templated mode is checked when the writer is made
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        if "{{" not in table:  # a templated one is checked once rendered, before anything is written
            refuse_percent("table", table)
        # The table's asset URI needs the connection's host, database and schema, known at run time:
        # the load emits it through this alias (also for templated names).
        kwargs.setdefault("outlets", [AssetAlias(f"scaledown-load:{conn_id}/{table}")])
        super().__init__(**kwargs)
        self.conn_id = conn_id
        self.table = table
        self.mode = mode
        self.hook_params = hook_params
        self.database = database
        submit: Any = getattr(self.job, "operator", None)  # job=submit.output: refuse now, before anything is paid
        if getattr(submit, "skip_landed_conn_id", None) and "{{" not in f"{mode}{table}{submit.skip_landed_table}":
            refuse_incremental_mode({"conn_id": submit.skip_landed_conn_id, "table": submit.skip_landed_table,
                                     "database": submit.skip_landed_database},
                                    conn_id=conn_id, table=table, database=database, mode=mode)

    def check_manifest(self, manifest: JobManifest) -> None:
        """Refuse, before writing, an incremental job loaded with replace or append (paid rows would go)."""
        refuse_percent("table", self.table)
        refuse_incremental_mode(manifest.skipped_against, conn_id=self.conn_id, table=self.table,
                                database=self.database, mode=self.mode)

    def land(self, batches: Iterator[pa.RecordBatch], columns: ResultColumns) -> int:
        """The rows into the table, in one transaction, by the table's writer."""
        hook = db_hook(self.conn_id, self.hook_params, self.database)
        # Another load of the same table may hold it: wait no longer than the task may run, and
        # not forever when it may run forever (a notebook holding a DuckDB file would hang it).
        timeout = self.execution_timeout.total_seconds() if self.execution_timeout else DEFAULT_LOCK_TIMEOUT
        writer = table_writer_for(hook, self.table, self.mode, columns.schema, columns.id_column,
                                  lock_timeout=timeout, log=self.log)
        landed = writer.write(batches)
        self._hook = hook
        return landed

    def destination(self) -> Location | None:
        """The table as an asset and a lineage dataset, when its name lasts."""
        try:
            database = database_of(self._hook.connection, self._hook)
            return database.table(self.table) if database else None
        except Exception as exc:  # naming must never fail a load that landed
            self.log.warning("No asset or lineage name for table %s: %s", self.table, exc)
            return None


class BatchOutputToParquetOperator(BaseBatchOutputOperator):
    """Write the results to one Parquet file (local path or object storage URI), replaced whole.

    :param path: destination file; templated.
    :param conn_id: object storage connection for ``path``, if it needs one.
    """

    template_fields: Sequence[str] = (*BaseBatchOutputOperator.template_fields, "path")

    def __init__(self, *, path: str, conn_id: str | None = None, **kwargs: Any) -> None:
        # A templated path is only known at run time: emitted through an alias then.
        kwargs.setdefault("outlets", [AssetAlias(f"scaledown-load:{path}") if "{{" in str(path)
                                      else path_location(str(path)).asset()])
        super().__init__(**kwargs)
        self.path = path
        self.conn_id = conn_id

    def land(self, batches: Iterator[pa.RecordBatch], columns: ResultColumns) -> int:
        """The rows into the Parquet file, written whole or not at all."""
        return write_parquet(batches, columns.schema, ObjectStoragePath(str(self.path), conn_id=self.conn_id))

    def destination(self) -> Location | None:
        """The file as an asset and a lineage dataset."""
        return path_location(str(self.path))
