"""Submit operators: rows from a DataFrame, Parquet or SQL become batches, paid for once.

All three share :class:`BaseBatchSubmitOperator` and differ only in :meth:`iter_record_batches`
(where rows come from). The job itself — spool, identity, sending, the ledger of what was paid for —
is :mod:`airflow_batch_provider.job`'s business; the operator wires it to Airflow:

1. every row is validated and encoded into a local spool (nothing is sent yet); invalid rows fail the
   task naming them (``on_invalid_rows="fail"``) or are reported and left out (``"skip"``);
2. spend guards: ``max_rows`` refuses a job that is too large, ``dry_run`` reports and stops;
3. the chunks the ledger (``task_state_store``) does not show as accepted are submitted, and every
   outcome is recorded before the task fails or returns;
4. the job manifest is written to ``manifest_dir`` and a small reference goes to XCom.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator, Sequence
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import pyarrow as pa
from airflow.sdk import BaseOperator, ObjectStoragePath

from airflow_batch_provider.destinations import row_encoder_for
from airflow_batch_provider.destinations.errors import LandedTableError
from airflow_batch_provider.destinations.identifiers import refuse_percent
from airflow_batch_provider.destinations.landed import LandedRows
from airflow_batch_provider.hooks.batch_api import BatchApiHook
from airflow_batch_provider.hooks.settings import BatchLimits
from airflow_batch_provider.job.errors import InvalidInputError
from airflow_batch_provider.job.ledger import Ledger
from airflow_batch_provider.job.manifest import (
    JobManifest,
    JobReference,
    default_manifest_dir,
    existing_manifest,
    job_location,
    require_shared_manifest_dir,
    write_manifest,
)
from airflow_batch_provider.job.submission import (
    ON_AMBIGUOUS,
    ON_INPUT_CHANGE,
    SpooledRows,
    Submission,
    dry_run_report,
    job_id_for,
    job_identity,
    spool_rows,
    task_identity,
)
from airflow_batch_provider.job.worker_wait import default_deferrable, wait_on_worker
from airflow_batch_provider.operators.lineage import openlineage_enabled, submit_lineage
from airflow_batch_provider.protocol import Classify, Extract, InvalidRequestError, Request, Summarize
from airflow_batch_provider.protocol.requests import rendered
from airflow_batch_provider.tabular.results_to_columns import ResultColumns
from airflow_batch_provider.tabular.rows_to_requests import DEFAULT_MAX_TEXT_BYTES, RowEncoder
from airflow_batch_provider.triggers.batch import check_event, defer_until_done

if TYPE_CHECKING:
    from airflow.sdk import Context


class BaseBatchSubmitOperator(BaseOperator):
    """Shared parameters of the submit operators.

    :param id_column: column whose values become ``custom_id`` (unique, non-null; integers or
        strings of any Arrow width or encoding; integers land as 64-bit, strings as text).
    :param text_column: column with the text to send.
    :param request: ``Extract(...)``, ``Summarize(...)`` or ``Classify(...)``; its text parameters
        are templated.
    :param batch_api_conn_id: the ``batch_api`` connection.
    :param max_items_per_batch: requests per batch; default: the connection's (50).
    :param max_bytes_per_batch: JSONL bytes per batch; default: the connection's.
    :param max_concurrent_submits: batches submitted at once.
    :param on_invalid_rows: ``"fail"`` (default): refuse the job naming the rows, submit nothing;
        ``"skip"``: submit the valid rows, report and count the others.
    :param on_input_change: what a retry does when the rows, the request or the batch limits differ
        from what an earlier try already paid for: ``"fail"`` (default) or ``"restart"`` (forget
        those batches, submit anew).
    :param on_ambiguous: what a retry does with chunks whose POST an earlier try sent without
        learning the outcome, when the connection does not say the server honours
        ``Idempotency-Key`` (``retry_ambiguous_submits``): ``"fail"`` (default: name them, resend
        nothing), ``"resubmit"`` (send them again, logged as a possible double charge) or
        ``"abandon"`` (never resend them: the job goes on without them, and their rows land as
        ``missing`` with error_code ``submit_outcome_unknown``; never billed twice).
    :param max_rows: refuse, before any call, a job of more rows than this.
    :param dry_run: validate and spool, report rows, batches, bytes and skipped rows in the log and
        the XCom, and stop without paying for anything.
    :param max_text_bytes: longest text accepted (UTF-8 bytes).
    :param manifest_dir: where job manifests are written (local path or object storage URI);
        default ``[scaledown] manifest_dir``, else ``[common.io] xcom_objectstorage_path`` +
        ``/scaledown``, else ``scaledown_jobs`` beside the dags folder. A local folder is refused
        under a distributed executor unless ``[scaledown] allow_local_manifest_dir`` is set.
    :param skip_landed_conn_id: with ``skip_landed_table``, the destination already loaded by
        ``BatchOutputToTableOperator``: rows whose id and request fingerprint landed there with
        status ``ok`` are not sent again (incremental runs pay only for new or changed rows).
    :param skip_landed_table: see ``skip_landed_conn_id``.
    :param skip_landed_hook_params: the ``hook_params`` the load into that table uses, if any.
    :param skip_landed_database: the ``database`` the load into that table uses, if any.
    :param destination: where the load will land the results: a database connection id, or
        ``"parquet"``. Ids and column names are checked against what it holds before anything is
        paid for; default the ``skip_landed_conn_id``, else every database this package writes to
        natively (the strictest of PostgreSQL, MySQL/MariaDB, SQLite and DuckDB).
    :param allow_empty: an input with no rows gives an empty job (no batches; downstream waits and
        loads finish at once) instead of failing — for scheduled queries that may find nothing new.
    :param wait_for_completion: return only once the job is finished: deferred to ``BatchTrigger``
        or, with ``deferrable=False``, polling from the worker.
    :param deferrable: how ``wait_for_completion`` waits; default ``[operators] default_deferrable``.
    :param poll_interval: seconds between status polls when waiting.
    :param wait_timeout: longest wait for the job, from submission.
    """

    template_fields: Sequence[str] = ("request", "batch_api_conn_id", "manifest_dir", "skip_landed_table",
                                      "skip_landed_database")
    # The Rendered tab shows the request as what it asks (Request.serialize): model, rubrics, instructions.
    template_fields_renderers: ClassVar[dict[str, str]] = {"request": "json"}
    ui_color = "#e8f0fe"

    def __init__(
        self,
        *,
        id_column: str,
        text_column: str,
        request: Request,
        batch_api_conn_id: str = BatchApiHook.default_conn_name,
        max_items_per_batch: int | None = None,
        max_bytes_per_batch: int | None = None,
        max_concurrent_submits: int = 8,
        on_invalid_rows: str = "fail",
        on_input_change: str = "fail",
        on_ambiguous: str = "fail",
        max_rows: int | None = None,
        dry_run: bool = False,
        max_text_bytes: int = DEFAULT_MAX_TEXT_BYTES,
        manifest_dir: str | None = None,
        skip_landed_conn_id: str | None = None,
        skip_landed_table: str | None = None,
        skip_landed_hook_params: dict | None = None,
        skip_landed_database: str | None = None,
        destination: str | None = None,
        allow_empty: bool = False,
        wait_for_completion: bool = False,
        deferrable: bool | None = None,
        poll_interval: float = 5.0,
        wait_timeout: timedelta = timedelta(hours=24),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.id_column = id_column
        self.text_column = text_column
        self.request = request
        self.batch_api_conn_id = batch_api_conn_id
        self.max_items_per_batch = max_items_per_batch
        self.max_bytes_per_batch = max_bytes_per_batch
        self.max_concurrent_submits = max_concurrent_submits
        self.on_invalid_rows = on_invalid_rows
        self.on_input_change = on_input_change
        self.on_ambiguous = on_ambiguous
        self.max_rows = max_rows
        self.report_only = dry_run  # not self.dry_run: that is BaseOperator's method
        self.max_text_bytes = max_text_bytes
        self.manifest_dir = manifest_dir
        self.skip_landed_conn_id = skip_landed_conn_id
        self.skip_landed_table = skip_landed_table
        self.skip_landed_hook_params = skip_landed_hook_params
        self.skip_landed_database = skip_landed_database
        self.destination = destination
        self.allow_empty = allow_empty
        self.wait_for_completion = wait_for_completion
        self.deferrable = default_deferrable() if deferrable is None else deferrable
        self.poll_interval = poll_interval
        self.wait_timeout = wait_timeout
        self._submitting: str | None = None            # the job being submitted, for on_kill
        self._reference: JobReference | None = None  # the job reference, for lineage
        self._check_arguments()

    def _check_arguments(self) -> None:
        """Refuse, when the DAG is parsed, arguments no run could use."""
        if self.on_invalid_rows not in ("fail", "skip"):
            raise ValueError(f"on_invalid_rows must be 'fail' or 'skip', got {self.on_invalid_rows!r}")
        if self.on_input_change not in ON_INPUT_CHANGE:
            raise ValueError(f"on_input_change must be 'fail' or 'restart', got {self.on_input_change!r}")
        if self.on_ambiguous not in ON_AMBIGUOUS:
            raise ValueError(f"on_ambiguous must be one of {', '.join(ON_AMBIGUOUS)}, got {self.on_ambiguous!r}")
        if not isinstance(self.request, (Extract, Summarize, Classify)):
            raise TypeError(f"request must be Extract, Summarize or Classify, got {type(self.request).__name__}")
        if self.max_concurrent_submits < 1:
            raise ValueError("max_concurrent_submits must be >= 1")
        if self.max_rows is not None and self.max_rows < 1:
            raise ValueError(f"max_rows must be >= 1, got {self.max_rows}")
        if bool(self.skip_landed_conn_id) != bool(self.skip_landed_table):
            raise ValueError("skip_landed_conn_id and skip_landed_table go together")
        # Whatever the load's options, its columns must not collide: refuse that now, not after paying.
        ResultColumns(model=self.request.model, request=self.request.params(), id_column=self.id_column,
                      id_type=pa.string(), label_scores=True, entity_columns="all")
        refuse_percent("id_column", self.id_column)
        if self.skip_landed_table and "{{" not in self.skip_landed_table:
            refuse_percent("skip_landed_table", self.skip_landed_table)

    # -- where rows come from ---------------------------------------------------------------------
    def iter_record_batches(self) -> Iterator[pa.RecordBatch]:
        """The source's rows, a record batch at a time, with at least the id and text columns."""
        raise NotImplementedError

    # -- the job ------------------------------------------------------------------------------------
    def render_template(self, content: Any, context: Context, jinja_env: Any = None,
                        seen_oids: set[int] | None = None) -> Any:
        """A request (a frozen dataclass) renders into a new one, its text parameters rendered. Here,
        not in ``render_template_fields``: a mapped task's fields are rendered by this method alone."""
        if isinstance(content, (Extract, Summarize, Classify)):
            try:
                return rendered(content, lambda text: self.render_template(text, context, jinja_env))
            except InvalidRequestError as exc:  # e.g. a rubric that renders empty: the same on every try
                raise InvalidInputError(f"the request, once its templates were rendered: {exc}") from exc
        return super().render_template(content, context, jinja_env, seen_oids)

    def execute(self, context: Context) -> JobReference:
        """Spool and check every row, submit the chunks not yet paid for, publish the job reference, and
        wait if asked."""
        manifest_dir = self.manifest_dir or default_manifest_dir()
        require_shared_manifest_dir(manifest_dir)
        hook = BatchApiHook(self.batch_api_conn_id)
        limits = hook.settings.batch_limits(self.max_items_per_batch, self.max_bytes_per_batch)  # once, for the job
        with tempfile.TemporaryDirectory(prefix="scaledown-job-") as tmp:
            spooled = self._spool(Path(tmp), limits)
            identity = job_identity(spooled.spool.digest, self.request, limits)
            task = task_identity(context)
            if self.report_only:
                self._reference = dry_run_report(job_id_for(task, identity), spooled, self.log)
                return self._reference
            location = job_location(manifest_dir, job_id_for(task, identity))
            manifest = existing_manifest(location)
            if manifest is not None and manifest.input_fingerprint == identity:
                self.log.info("Job %s was wholly submitted by an earlier try (its manifest is at %s): nothing to "
                              "send", manifest.job_id, location)
            else:
                manifest = self._submit(context, spooled, identity, task, location, hook, limits)
        reference = self._publish(manifest, location)
        self._wait(reference, manifest)
        return reference

    def _spool(self, folder: Path, limits: BatchLimits) -> SpooledRows:
        """Every row read, checked and encoded into chunks on local disk, before anything is paid for."""
        try:
            with contextlib.ExitStack() as stack:
                landed = (stack.enter_context(LandedRows(
                    self.skip_landed_conn_id, str(self.skip_landed_table), self.id_column,
                    hook_params=self.skip_landed_hook_params, database=self.skip_landed_database)).fingerprints
                          if self.skip_landed_conn_id else None)
                spooled = spool_rows(self.iter_record_batches(), self._encoder(), folder, limits=limits, landed=landed,
                                     allow_empty=self.allow_empty, on_invalid_rows=self.on_invalid_rows, log=self.log)
        except (InvalidRequestError, LandedTableError) as exc:
            raise InvalidInputError(str(exc)) from exc
        if self.max_rows is not None and spooled.spool.rows > self.max_rows:
            raise InvalidInputError(
                f"the job holds {spooled.spool.rows} rows to send, more than max_rows={self.max_rows}; nothing "
                "was submitted. Raise max_rows if this size is expected.")
        return spooled

    def _publish(self, manifest: JobManifest, location: ObjectStoragePath) -> JobReference:
        """The job reference downstream tasks read (XCom), kept for lineage too."""
        reference = manifest.reference(str(location))
        self._reference = reference  # for lineage, also when the wait below defers
        self.log.info("Job %s: %d rows in %d batches (%d invalid rows left out, %d already landed); "
                      "manifest %s", manifest.job_id, manifest.total_rows, len(manifest.batches),
                      manifest.invalid_rows, manifest.skipped_rows, location)
        return reference

    def _wait(self, reference: JobReference, manifest: JobManifest) -> None:
        """With ``wait_for_completion``: on this worker, or deferred to the triggerer."""
        if not (self.wait_for_completion and manifest.batches):
            return
        if not self.deferrable:
            wait_on_worker(reference, manifest, poll_interval=self.poll_interval, timeout=self.wait_timeout,
                           log=self.log)
            return
        # The trigger ends the task on success, out of reach of Airflow 3.3's stale executor event
        # (docs/troubleshooting.md); but Airflow then emits no OpenLineage event for it, so where
        # lineage is collected the task resumes to report it (submit >> BatchSensor has both).
        defer_until_done(self, reference, poll_interval=self.poll_interval, timeout=self.wait_timeout,
                         method_name="execute_complete", end_with=None if openlineage_enabled() else "job")

    def _encoder(self) -> RowEncoder:
        """Rows checked against what the load's destination holds, before paying."""
        refuse_percent("skip_landed_table", str(self.skip_landed_table or ""))  # as rendered
        return row_encoder_for(self.request, self.id_column, self.text_column, self.max_text_bytes,
                               self.destination or self.skip_landed_conn_id)

    def _submit(self, context: Context, spooled: SpooledRows, identity: str, task: str,
                location: ObjectStoragePath, hook: BatchApiHook, limits: BatchLimits) -> JobManifest:
        """Pay for the chunks the ledger does not show as accepted, then write the manifest (the
        job's record from then on) and clear the ledger."""
        spool = spooled.spool
        ledger = Ledger(context.get("task_state_store"))
        submission = Submission(
            batch_api_conn_id=self.batch_api_conn_id, spool=spool, identity=identity, task=task, ledger=ledger,
            concurrency=self.max_concurrent_submits, limits=limits,
            retry_ambiguous=hook.settings.retry_ambiguous_submits, on_ambiguous=self.on_ambiguous,
            on_input_change=self.on_input_change, earlier_tries=getattr(context.get("ti"), "try_number", 1) > 1,
            job_dir=location, log=self.log)
        self._submitting = submission.job_id
        batches = submission.run()
        skipped_against = ({"conn_id": self.skip_landed_conn_id, "table": str(self.skip_landed_table),
                            "database": self.skip_landed_database} if self.skip_landed_conn_id else None)
        manifest = JobManifest(
            job_id=submission.job_id, batch_api_conn_id=self.batch_api_conn_id, model=self.request.model,
            request=self.request.params(), id_column=self.id_column, id_type=str(spooled.id_type),
            input_fingerprint=identity, total_rows=spool.rows, invalid_rows=spooled.invalid,
            batches=batches, skipped_rows=spooled.skipped, skipped_against=skipped_against)
        write_manifest(location, manifest, spool.rows_path)
        assert submission.entry is not None
        ledger.close(submission.entry, str(location))
        return manifest

    def on_kill(self) -> None:
        """Say what a stop leaves running: accepted batches go on, and are recorded."""
        # The API has no cancel endpoint: batches already accepted keep running, and are billed.
        job_id = self._submitting
        if job_id:
            self.log.warning("Killed while submitting job %s: the batches already accepted keep running on the "
                             "server and are billed (the API has no cancel); they are recorded in the task's "
                             "ledger, so a retry re-attaches to them instead of paying again.", job_id)

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> JobReference:
        """The job reference, once the trigger says the job finished."""
        reference: JobReference = check_event(event)["job"]
        self._reference = reference  # a resumed task is a new process: lineage anew
        self._capture_source()
        return reference

    # -- lineage ------------------------------------------------------------------------------------
    def _capture_source(self, hook: Any = None) -> None:
        """Look up what lineage needs of the source while the task runs (the OpenLineage listener
        calls ``get_openlineage_facets_on_complete`` in a child process with a time limit); ``hook``:
        the source's hook when one is already open (SQL)."""

    def source_lineage(self, rows: int) -> tuple[list[Any], dict[str, Any]]:
        """OpenLineage input datasets and job facets of the source: none for a DataFrame."""
        return [], {}

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """Inputs (the Parquet file or folder, or the tables the query reads, with the SQL), rows
        read; output: the job's manifest, which the load reads, with the rows submitted."""
        return submit_lineage(self._reference, self.source_lineage) if self._reference else None
