"""Submit operators: rows from a DataFrame, Parquet or SQL become batches, safely.

All three share :class:`BaseBatchSubmitOperator` and differ only in :meth:`iter_record_batches`
(where rows come from). The flow:

1. every row is validated and encoded into a local spool (nothing is sent yet);
2. invalid rows fail the task naming them (``on_invalid_rows="fail"``) or are reported and left out
   (``"skip"``) — never silently dropped;
3. chunks (batches of at most ``max_items_per_batch`` requests and ``max_bytes_per_batch`` bytes)
   are submitted with bounded concurrency; progress is recorded in ``task_state_store`` before and
   after each paid call, so a retry re-attaches to accepted batches and submits only the rest;
4. the job manifest is written to ``manifest_dir`` and a small reference goes to XCom.
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from airflow.sdk import BaseHook, BaseOperator, ObjectStoragePath
from airflow.sdk.exceptions import AirflowFailException
from airflow_batch_provider.hooks.batch_api import BatchApiHook
from airflow_batch_provider.landed import landed_fingerprints
from airflow_batch_provider.protocol import Classify, Extract, InvalidRequestError, Label, Request, Summarize
from airflow_batch_provider.state import (
    ROWS_FILE,
    BatchRef,
    JobManifest,
    SubmissionProgress,
    job_location,
    write_manifest,
)
from airflow_batch_provider.tabular.rows_to_requests import DEFAULT_MAX_TEXT_BYTES, InvalidRow, RowEncoder
from airflow_batch_provider.tabular.spool import RequestSpool

if TYPE_CHECKING:
    import pandas as pd

    from airflow.sdk import Context

READ_BATCH_ROWS = 25_000  # rows read and encoded at a time: memory vs per-batch overhead
SHOWN_INVALID = 10


class InvalidInputError(AirflowFailException, ValueError):
    """The input cannot be sent as it is. Nothing was submitted, and a retry would not help, so the
    task fails without retrying."""


class InvalidRowsError(InvalidInputError):
    """Rows that cannot be sent. Nothing was submitted."""

    def __init__(self, invalid: Sequence[InvalidRow], count: int, total: int) -> None:
        shown = "; ".join(f"{row.row_id!r}: {row.reason}" for row in invalid[:SHOWN_INVALID])
        more = f" (and {count - SHOWN_INVALID} more)" if count > SHOWN_INVALID else ""
        super().__init__(
            f"{count} of {total} rows cannot be sent, so nothing was submitted: {shown}{more}. "
            "Fix these rows, or pass on_invalid_rows='skip' to send the others and report these.")
        self.invalid = list(invalid)
        self.count = count


class InputChangedError(AirflowFailException):
    """A retry found different input than the attempt that already paid for batches."""


def default_manifest_dir() -> str:
    from airflow.configuration import conf

    return conf.get("scaledown", "manifest_dir",
                    fallback=str(Path(conf.get("core", "dags_folder")).parent / "scaledown_jobs"))


def _render_request(operator: BaseOperator, request: Request, context: Context) -> Request:
    """Jinja in the request's text parameters (instructions, descriptions, rubrics, prompts)."""
    render = lambda value: operator.render_template(value, context)  # noqa: E731
    if isinstance(request, Extract):
        return Extract({k: render(v) for k, v in request.entities.items()}, render(request.instruction))
    if isinstance(request, Summarize):
        return dataclasses.replace(request, instructions=render(request.instructions))
    if isinstance(request, Classify):
        return Classify([Label(label.name, render(label.rubric)) for label in request.labels],
                        render(request.system_prompt))
    raise TypeError(f"request must be Extract, Summarize or Classify, got {type(request).__name__}")


class BaseBatchSubmitOperator(BaseOperator):
    """Shared parameters of the submit operators.

    :param id_column: column whose values become ``custom_id`` (unique, non-null; integers or
        strings, kept in their original type for the join back).
    :param text_column: column with the text to send.
    :param request: ``Extract(...)``, ``Summarize(...)`` or ``Classify(...)``; its text parameters
        are templated.
    :param batch_api_conn_id: the ``batch_api`` connection.
    :param max_items_per_batch: requests per batch; default: the connection's (50).
    :param max_bytes_per_batch: JSONL bytes per batch; default: the connection's.
    :param max_concurrent_submits: batches submitted at once.
    :param on_invalid_rows: ``"fail"`` (default): refuse the job naming the rows, submit nothing;
        ``"skip"``: submit the valid rows, report and count the others.
    :param on_input_change: what a retry does when the input differs from what an earlier try
        already submitted: ``"fail"`` (default) or ``"restart"`` (forget those batches, submit anew).
    :param max_text_bytes: longest text accepted (UTF-8 bytes).
    :param manifest_dir: where job manifests are written (local path or object storage URI);
        default ``[scaledown] manifest_dir`` or ``scaledown_jobs`` beside the dags folder.
    :param skip_landed_conn_id: with ``skip_landed_table``, the destination already loaded by
        ``BatchOutputToTableOperator``: rows whose id and request fingerprint landed there with
        status ``ok`` are not sent again (incremental runs pay only for new or changed rows).
    :param skip_landed_table: see ``skip_landed_conn_id``.
    :param allow_empty: an input with no rows gives an empty job (no batches; downstream waits and
        loads finish at once) instead of failing — for scheduled queries that may find nothing new.
    :param wait_for_completion: defer to ``BatchTrigger`` until the job is finished.
    :param poll_interval: seconds between status polls when waiting.
    :param wait_timeout: longest wait for the job, from submission.
    """

    template_fields: Sequence[str] = ("manifest_dir", "skip_landed_table")
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
        max_concurrent_submits: int = 4,
        on_invalid_rows: str = "fail",
        on_input_change: str = "fail",
        max_text_bytes: int = DEFAULT_MAX_TEXT_BYTES,
        manifest_dir: str | None = None,
        skip_landed_conn_id: str | None = None,
        skip_landed_table: str | None = None,
        allow_empty: bool = False,
        wait_for_completion: bool = False,
        poll_interval: float = 5.0,
        wait_timeout: timedelta = timedelta(hours=24),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if on_invalid_rows not in ("fail", "skip"):
            raise ValueError(f"on_invalid_rows must be 'fail' or 'skip', got {on_invalid_rows!r}")
        if on_input_change not in ("fail", "restart"):
            raise ValueError(f"on_input_change must be 'fail' or 'restart', got {on_input_change!r}")
        if not isinstance(request, (Extract, Summarize, Classify)):
            raise TypeError(f"request must be Extract, Summarize or Classify, got {type(request).__name__}")
        if max_concurrent_submits < 1:
            raise ValueError("max_concurrent_submits must be >= 1")
        if bool(skip_landed_conn_id) != bool(skip_landed_table):
            raise ValueError("skip_landed_conn_id and skip_landed_table go together")
        self.id_column = id_column
        self.text_column = text_column
        self.request = request
        self.batch_api_conn_id = batch_api_conn_id
        self.max_items_per_batch = max_items_per_batch
        self.max_bytes_per_batch = max_bytes_per_batch
        self.max_concurrent_submits = max_concurrent_submits
        self.on_invalid_rows = on_invalid_rows
        self.on_input_change = on_input_change
        self.max_text_bytes = max_text_bytes
        self.manifest_dir = manifest_dir
        self.skip_landed_conn_id = skip_landed_conn_id
        self.skip_landed_table = skip_landed_table
        self.allow_empty = allow_empty
        self.wait_for_completion = wait_for_completion
        self.poll_interval = poll_interval
        self.wait_timeout = wait_timeout

    # -- where rows come from ---------------------------------------------------------------------
    def iter_record_batches(self) -> Iterator[pa.RecordBatch]:
        """The source's rows, a record batch at a time, with at least the id and text columns."""
        raise NotImplementedError

    # -- the job ------------------------------------------------------------------------------------
    def execute(self, context: Context) -> dict[str, Any]:
        request = _render_request(self, self.request, context)
        hook = BatchApiHook(self.batch_api_conn_id)
        max_items = self.max_items_per_batch or hook.settings.max_items_per_batch
        max_bytes = self.max_bytes_per_batch or hook.settings.max_bytes_per_batch
        with tempfile.TemporaryDirectory(prefix="scaledown-job-") as tmp:
            try:
                spool, id_type, counts = self._spool(request, Path(tmp), max_items, max_bytes)
            except InvalidRequestError as exc:
                raise InvalidInputError(str(exc)) from exc
            fingerprint = spool.close()
            progress = SubmissionProgress(context.get("task_state_store"))
            job_id = self._job_id(progress, fingerprint, len(spool.chunks))
            batches = self._submit_all(spool, job_id, progress, max_items, max_bytes)
            manifest = JobManifest(
                job_id=job_id, conn_id=self.batch_api_conn_id, model=request.model,
                request=request.params(), id_column=self.id_column, id_type=str(id_type),
                input_fingerprint=fingerprint, total_rows=spool.rows, invalid_rows=counts["invalid"],
                batches=batches)
            location = job_location(self.manifest_dir or default_manifest_dir(), job_id)
            write_manifest(location, manifest)
            with open(spool.rows_path, "rb") as source, (location / ROWS_FILE).open("wb") as target:
                shutil.copyfileobj(source, target, 1 << 20)
        reference = {**manifest.reference(str(location)), "skipped_rows": counts["skipped"]}
        self.log.info("Job %s: %d rows in %d batches (%d invalid rows left out, %d already landed); "
                      "manifest %s", job_id, spool.rows, len(batches), counts["invalid"],
                      counts["skipped"], location)
        if self.wait_for_completion and batches:
            from airflow_batch_provider.sensors.batch import defer_until_done

            defer_until_done(self, reference, poll_interval=self.poll_interval,
                             timeout=self.wait_timeout, method_name="execute_complete")
        return reference

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        from airflow_batch_provider.sensors.batch import check_event

        return check_event(event, self.log)["job"]

    def _spool(self, request: Request, directory: Path, max_items: int, max_bytes: int):
        encoder = RowEncoder(request, self.id_column, self.text_column, self.max_text_bytes)
        landed = (landed_fingerprints(self.skip_landed_conn_id, self.skip_landed_table, self.id_column)
                  if self.skip_landed_conn_id else None)
        spool: RequestSpool | None = None
        invalid: list[InvalidRow] = []
        counts = {"invalid": 0, "skipped": 0, "seen": 0}
        id_type = pa.string()
        for batch in self.iter_record_batches():
            if spool is None:
                encoder.check_schema(batch.schema)
                id_type = batch.schema.field(self.id_column).type
                if pa.types.is_null(id_type):
                    id_type = pa.string()
                spool = RequestSpool(directory, id_type, max_items, max_bytes)
            counts["seen"] += batch.num_rows
            encoded = encoder.encode(batch)
            counts["invalid"] += len(encoded.invalid)
            invalid.extend(encoded.invalid[: max(0, SHOWN_INVALID - len(invalid))])
            lines, ids, custom_ids, fingerprints = encoded.lines, encoded.ids, encoded.custom_ids, encoded.fingerprints
            if landed:
                keep = [landed.get(cid) != fp for cid, fp in zip(custom_ids.to_pylist(), fingerprints.to_pylist())]
                counts["skipped"] += keep.count(False)
                if not all(keep):
                    mask = pa.array(keep)
                    lines, ids, custom_ids, fingerprints = (a.filter(mask) for a in (lines, ids, custom_ids, fingerprints))
            sizes = pc.binary_length(lines)
            if len(lines) and pc.max(sizes).as_py() > max_bytes:
                first = pc.index(pc.greater(sizes, max_bytes), True).as_py()
                raise InvalidRequestError(
                    f"row {custom_ids[first].as_py()!r}: its request line is longer than max_bytes_per_batch="
                    f"{max_bytes}; raise max_bytes_per_batch or lower max_text_bytes")
            spool.add(lines, ids, custom_ids, fingerprints)
        if spool is None or counts["seen"] == 0:
            if not self.allow_empty:
                raise InvalidRequestError("the input holds no rows: nothing to submit (pass allow_empty=True "
                                          "if an empty input is normal for this task)")
            self.log.info("The input holds no rows (allow_empty=True): an empty job")
            spool = spool or RequestSpool(directory, id_type, max_items, max_bytes)
        if counts["invalid"] and self.on_invalid_rows == "fail":
            raise InvalidRowsError(invalid, counts["invalid"], counts["seen"])
        if counts["invalid"]:
            self.log.warning("%d of %d rows left out (on_invalid_rows='skip'), e.g. %s", counts["invalid"],
                             counts["seen"], "; ".join(f"{r.row_id!r}: {r.reason}" for r in invalid))
        return spool, id_type, counts

    def _job_id(self, progress: SubmissionProgress, fingerprint: str, chunks: int) -> str:
        if progress.store is None:
            self.log.warning("task_state_store is not available: a retry of this task cannot re-attach "
                             "to batches this try submits")
        previous = progress.job()
        if previous:
            if previous["fingerprint"] == fingerprint:
                self.log.info("Resuming job %s submitted by an earlier try", previous["job_id"])
                return previous["job_id"]
            if self.on_input_change == "fail":
                raise InputChangedError(
                    f"an earlier try of this task submitted job {previous['job_id']} for different input "
                    f"(fingerprint {previous['fingerprint'][:12]}…, now {fingerprint[:12]}…); those batches "
                    "are paid for. Restore the input, or set on_input_change='restart' to submit anew.")
            self.log.warning("Input changed since job %s; starting over (on_input_change='restart')",
                             previous["job_id"])
            progress.forget(previous["chunks"])
        job_id = f"job-{uuid.uuid4().hex[:20]}"
        progress.start(job_id, fingerprint, chunks)
        return job_id

    def _submit_all(self, spool: RequestSpool, job_id: str, progress: SubmissionProgress,
                    max_items: int, max_bytes: int) -> list[BatchRef]:
        """Submit the chunks not yet accepted, ``max_concurrent_submits`` at a time.

        ``task_state_store`` is written from this thread only; the pool threads just do HTTP, each
        with a hook (and session) of its own.
        """
        accepted: dict[int, str] = {}
        pending: list[int] = []
        for index in range(len(spool.chunks)):
            batch_id = progress.accepted(index)
            if batch_id:
                accepted[index] = batch_id
            else:
                pending.append(index)
        if accepted:
            self.log.info("%d of %d batches were accepted by an earlier try; submitting %d",
                          len(accepted), len(spool.chunks), len(pending))
        hooks: dict[int, BatchApiHook] = {}

        def submit(index: int) -> str:
            import threading

            thread_hook = hooks.setdefault(threading.get_ident(), BatchApiHook(self.batch_api_conn_id))
            lines = spool.read_chunk(spool.chunks[index])
            return thread_hook.submit_batch(lines, idempotency_key=f"{job_id}:{index}",
                                            max_items=max_items, max_bytes=max_bytes).batch_id

        queue = iter(pending)
        running: dict[Future, int] = {}
        with ThreadPoolExecutor(self.max_concurrent_submits, thread_name_prefix="scaledown-submit") as pool:
            def start_next() -> bool:
                index = next(queue, None)
                if index is None:
                    return False
                progress.mark_in_flight(index)
                running[pool.submit(submit, index)] = index
                return True

            for _ in range(self.max_concurrent_submits):
                if not start_next():
                    break
            while running:
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    index = running.pop(future)
                    batch_id = future.result()  # a failure stops the job; accepted chunks are kept
                    progress.mark_accepted(index, batch_id)
                    accepted[index] = batch_id
                    if len(accepted) % 100 == 0 or len(accepted) == len(spool.chunks):
                        self.log.info("Submitted %d of %d batches", len(accepted), len(spool.chunks))
                    start_next()
        return [BatchRef(accepted[i], chunk.first_row, chunk.rows) for i, chunk in enumerate(spool.chunks)]


def _frame_to_batches(frame: pd.DataFrame, columns: list[str]) -> Iterator[pa.RecordBatch]:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise InvalidRequestError(f"the DataFrame has no column {', '.join(map(repr, missing))}; "
                                  f"its columns are {', '.join(map(str, frame.columns))}")
    table = pa.Table.from_pandas(frame[columns], preserve_index=False)
    yield from table.to_batches(max_chunksize=READ_BATCH_ROWS)


class DataFrameToBatchOperator(BaseBatchSubmitOperator):
    """Submit the rows of a pandas DataFrame.

    :param dataframe: a DataFrame, an XComArg of one (e.g. a ``@task``'s output), or a callable
        returning one; like any callable template field it is called on the worker as
        ``dataframe(context=..., jinja_env=...)``, so the frame is built where the task runs.
    """

    template_fields: Sequence[str] = (*BaseBatchSubmitOperator.template_fields, "dataframe")

    def __init__(self, *, dataframe: pd.DataFrame | Callable[[], pd.DataFrame] | Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.dataframe = dataframe

    def iter_record_batches(self) -> Iterator[pa.RecordBatch]:
        import pandas as pd

        frame = self.dataframe(context={}, jinja_env=None) if callable(self.dataframe) else self.dataframe
        if not isinstance(frame, pd.DataFrame):
            raise TypeError(f"dataframe must be a pandas DataFrame (or return one), got {type(frame).__name__}")
        yield from _frame_to_batches(frame, [self.id_column, self.text_column])


class ParquetToBatchOperator(BaseBatchSubmitOperator):
    """Submit the rows of a Parquet file, or of every ``*.parquet`` file under a directory.

    Read row group by row group (only the id and text columns), so memory does not grow with the file.

    :param path: local path or object storage URI (``s3://...``, ``gs://...``, ``file://...``); templated.
    :param conn_id: object storage connection for ``path``, if it needs one.
    """

    template_fields: Sequence[str] = (*BaseBatchSubmitOperator.template_fields, "path")

    def __init__(self, *, path: str, conn_id: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.path = path
        self.conn_id = conn_id

    def _files(self) -> list[ObjectStoragePath]:
        root = ObjectStoragePath(str(self.path), conn_id=self.conn_id)
        if root.is_dir():
            files = sorted((p for p in root.rglob("*.parquet") if p.is_file()), key=str)
            if not files:
                raise InvalidRequestError(f"no *.parquet files under {self.path}")
            return files
        if not root.exists():
            raise InvalidRequestError(f"no Parquet file at {self.path}")
        return [root]

    def iter_record_batches(self) -> Iterator[pa.RecordBatch]:
        columns = [self.id_column, self.text_column]
        for path in self._files():
            with path.open("rb") as handle:
                parquet = pq.ParquetFile(handle)
                missing = [c for c in columns if c not in parquet.schema_arrow.names]
                if missing:
                    raise InvalidRequestError(
                        f"{path} has no column {', '.join(map(repr, missing))}; its columns are "
                        f"{', '.join(parquet.schema_arrow.names)}")
                yield from parquet.iter_batches(batch_size=READ_BATCH_ROWS, columns=columns)


class SqlToBatchOperator(BaseBatchSubmitOperator):
    """Submit the rows a query returns, on any ``DbApiHook`` connection, fetched in chunks.

    :param sql: the query (templated); it must return ``id_column`` and ``text_column``.
    :param conn_id: the database connection.
    :param parameters: query parameters.
    """

    template_fields: Sequence[str] = (*BaseBatchSubmitOperator.template_fields, "sql", "parameters")
    template_ext: Sequence[str] = (".sql",)
    template_fields_renderers = {"sql": "sql"}

    def __init__(self, *, sql: str, conn_id: str, parameters: Iterable | dict | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.sql = sql
        self.conn_id = conn_id
        self.parameters = parameters

    def iter_record_batches(self) -> Iterator[pa.RecordBatch]:
        hook = BaseHook.get_connection(self.conn_id).get_hook()
        conn = hook.get_conn()
        try:
            # PostgreSQL: a named (server-side) cursor streams; others fetch in chunks as they can.
            cursor = conn.cursor(name=f"scaledown_{uuid.uuid4().hex[:8]}") \
                if getattr(hook, "conn_type", "") == "postgres" else conn.cursor()
            cursor.execute(self.sql, self.parameters) if self.parameters else cursor.execute(self.sql)
            names: list[str] | None = None
            while rows := cursor.fetchmany(READ_BATCH_ROWS):
                names = names or [d[0] for d in cursor.description]
                yield pa.RecordBatch.from_pylist([dict(zip(names, row)) for row in rows])
            cursor.close()
        finally:
            conn.close()
