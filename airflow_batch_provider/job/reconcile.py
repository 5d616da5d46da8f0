"""Reads a job's output back, batch by batch, and accounts for every submitted row.

First every batch's output is read into the job's local spool (job/output_spool.py), a bounded
number at once, failed reads tried again by time while the others go on. Then, for each batch of the
manifest, the rows it carried are read from the job's rows file (in order, a batch's worth at a
time) and each becomes ``ok`` or ``error`` from its output line, or ``missing`` when no line came
back (or the batch failed). Lines for ids the batch did not carry, second lines for an id, and lines
without an id are counted, never loaded. Memory holds a few batches and one record batch of results.
"""

from __future__ import annotations

import heapq
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, fields
from typing import Any

import pyarrow as pa
from airflow.sdk import ObjectStoragePath
from airflow.sdk.exceptions import AirflowFailException

from airflow_batch_provider.hooks.batch_api import BatchApiHook
from airflow_batch_provider.hooks.errors import BatchNotFoundError
from airflow_batch_provider.hooks.retry import is_retryable
from airflow_batch_provider.hooks.thread_hooks import ThreadHooks
from airflow_batch_provider.job.budget import RequestBudget, budget_for
from airflow_batch_provider.job.errors import (
    BatchDownloadError,
    BatchDownloadRefusedError,
    GaveUp,
    OutputNotReadyError as OutputNotReadyError,
)
from airflow_batch_provider.job.manifest import ABANDONED_CODE, ROWS_FILE, BatchRef, JobManifest
from airflow_batch_provider.job.output_spool import OutputSpool
from airflow_batch_provider.job.retry_by_time import RetryByTime
from airflow_batch_provider.logs import ProgressLog
from airflow_batch_provider.protocol import BatchState, OutputLine
from airflow_batch_provider.tabular.results_to_columns import RECORD_BATCH_ROWS, ResultColumns


@dataclass
class LoadCounts:
    """What a load accounted for: rows ok, error and missing, and output lines it could not use."""
    rows: int = 0
    ok: int = 0
    error: int = 0
    missing: int = 0
    duplicate_lines: int = 0
    unknown_lines: int = 0
    unattributable_lines: int = 0

    def as_dict(self) -> dict[str, int]:
        """The counts as the load's summary (XCom, asset events) holds them."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def describe(self) -> str:
        """The counts as the task log says them."""
        extra = ", ".join(f"{n.replace('_', ' ')}: {v}" for n, v in self.as_dict().items()
                          if n.endswith("_lines") and v)
        return (f"{self.rows} rows: {self.ok} ok, {self.error} error, {self.missing} missing"
                + (f" (ignored output lines — {extra})" if extra else ""))


class _RowsCursor:
    """Reads the rows file in order and hands out the next ``n`` rows: their custom_ids, ids and
    fingerprints. Rows become Python objects a slice at a time: converting each API batch's 50 rows
    on its own would cost more than the rows."""

    SLICE = 8192

    def __init__(self, path: ObjectStoragePath) -> None:
        self._handle = path.open("rb")
        self._batches = iter(pa.ipc.open_stream(self._handle))
        self._unread: pa.RecordBatch | None = None
        self._columns: list[list[Any]] = [[], [], []]
        self._at = 0

    def _convert_more(self) -> None:
        while self._unread is None or not self._unread.num_rows:
            self._unread = next(self._batches)
        part, self._unread = self._unread.slice(0, self.SLICE), self._unread.slice(self.SLICE)
        self._columns = [kept[self._at:] + part.column(name).to_pylist()
                         for kept, name in zip(self._columns, ("custom_id", "id", "request_fingerprint"), strict=True)]
        self._at = 0

    def take(self, n: int) -> tuple[list[str], list[Any], list[str]]:
        while len(self._columns[0]) - self._at < n:
            self._convert_more()
        start = self._at
        self._at += n
        custom_ids, ids, fingerprints = (column[start:self._at] for column in self._columns)
        return custom_ids, ids, fingerprints

    def close(self) -> None:
        self._handle.close()


class Reconciliation:
    """:meth:`download` reads every batch into the job's :class:`OutputSpool`; then iterate for
    record batches of typed result rows (of about ``RECORD_BATCH_ROWS`` rows, whatever the size of
    the API batches), in manifest order; :attr:`counts` holds the tally of what has been read so far
    (complete once iteration ends).

    Up to ``concurrency`` batches are read at once (each network round trip costs time, not CPU),
    each written to the spool as it arrives, so memory holds at most ``concurrency`` batches whatever
    the job's size. A batch whose read fails (each is tried once) goes back in the queue with
    backoff while the others are read (:class:`RetryByTime`); the load gives up on it only after the
    connection's ``retry_total_timeout``, or at once when no retry can help.
    """

    def __init__(self, batch_api_conn_id: str, manifest: JobManifest, location: ObjectStoragePath,
                 columns: ResultColumns, log, spool: OutputSpool, concurrency: int = 8) -> None:
        self.batch_api_conn_id = batch_api_conn_id
        self.manifest = manifest
        self.location = location
        self.columns = columns
        self.log = log
        self.spool = spool
        self.concurrency = concurrency
        self.counts = LoadCounts()
        self._states: dict[str, tuple[BatchState, str]] = {}  # batches read without output: their state
        # The downloads share one request budget, as a wait's status reads do (job/budget.py): as
        # fast as max_concurrent_downloads allow (under the connection's max_requests_per_minute)
        # until the API asks one of them to slow down; then together, at once, paced from half the
        # rate it was answering, growing back while answers come back quickly.
        self._budget: RequestBudget | None = None
        self._hooks = ThreadHooks(batch_api_conn_id, one_attempt=True)  # a batch is retried by time (download)

    def _fetch(self, ref: BatchRef) -> None:
        """Read a batch: its output into the spool, or (no output yet) its state. The output is asked
        for first: a completed batch (the common case, right after the wait) costs one request. Only
        when there is none yet (404: not finished, failed, or unknown) is the status read."""
        assert self._budget is not None  # set by download, which runs this
        if not self._budget.wait_turn():
            raise BatchDownloadError(f"batch {ref.batch_id} was not read: the load stopped")
        hook = self._hooks.get()
        sent = time.monotonic()
        try:
            self._output(hook, ref)
            self._budget.answered(time.monotonic() - sent)
            return
        except BatchNotFoundError:
            status = hook.get_batch(ref.batch_id)  # an unknown batch raises BatchNotFoundError again
        # Only answers count as answered: the budget hears of each throttled request from the hook.
        self._budget.answered(time.monotonic() - sent)
        if status.state is not BatchState.COMPLETED:
            self._states[ref.batch_id] = (status.state, status.raw_status)
            return
        try:
            self._output(hook, ref)  # it completed in between
        except BatchNotFoundError as exc:
            raise OutputNotReadyError(f"batch {ref.batch_id} has completed, but its output is not there yet",
                                      status_code=exc.status_code, endpoint=exc.endpoint) from None

    def _output(self, hook: BatchApiHook, ref: BatchRef) -> None:
        self.spool.write(ref.batch_id, list(hook.iter_output(ref.batch_id, expected_model=self.manifest.model)))

    def download(self) -> None:
        """Read every batch not yet in the spool (an earlier try on this machine may have read some)."""
        manifest = self.manifest
        todo = {ref.batch_id: ref for ref in manifest.batches if not ref.abandoned}
        total = len(todo)
        todo = {batch_id: ref for batch_id, ref in todo.items() if not self.spool.has(batch_id)}
        if len(todo) < total:
            self.log.info("%d of %d batches were read by an earlier try on this machine (kept in %s); reading "
                          "the other %d", total - len(todo), total, self.spool.path, len(todo))
        settings = BatchApiHook(self.batch_api_conn_id).settings
        retry = RetryByTime.of(settings)
        budget = self._budget = budget_for(settings, None, self.concurrency, self.log, "Output requests",
                                           unpaced=True)
        self._hooks.on_throttled = budget.slow_down  # before the first thread's hook is made
        queue = deque(todo.values())
        later: list[tuple[float, int, BatchRef]] = []  # (when, tie-break, batch): failed, to be read again
        running: dict[Future, tuple[BatchRef, float]] = {}
        progress = ProgressLog(self.log, "Read", "batches", total)
        read = total - len(todo)
        pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="scaledown-download")
        try:
            while queue or later or running:
                while later and later[0][0] <= time.monotonic():
                    queue.appendleft(heapq.heappop(later)[2])
                while queue and len(running) < self.concurrency:
                    ref = queue.popleft()
                    running[pool.submit(self._fetch, ref)] = (ref, time.monotonic())
                pause = min(1.0, max(0.0, later[0][0] - time.monotonic())) if later else 1.0
                if not running:  # every batch left waits for its next read
                    time.sleep(pause)
                done, _ = wait(running, timeout=pause, return_when=FIRST_COMPLETED)
                for future in done:
                    ref, started = running.pop(future)
                    failure = future.exception()
                    if failure is None:
                        retry.succeeded(ref.batch_id)
                        read += 1
                        continue
                    delay = self._again_in(retry, ref, failure, started)
                    heapq.heappush(later, (time.monotonic() + delay, id(ref), ref))
                budget.each_second()  # a second's downloads are the budget's cycle
                progress.update(read, f"{retry.failing} failing, to be read again" if retry.failing else "")
        finally:
            budget.stop()  # threads waiting for a turn end without sending
            pool.shutdown(wait=True, cancel_futures=True)
        if retry.retried:
            self.log.info("Every batch was read; %d reads were tried again after failing", retry.retried)

    def _again_in(self, retry: RetryByTime, ref: BatchRef, failure: BaseException, started: float) -> float:
        """Seconds before a batch whose read failed is read again; raises when it must not be."""
        where = f"batch {ref.batch_id} of job {self.manifest.job_id}"
        if isinstance(failure, AirflowFailException):  # a key, a certificate, a proxy: fix the connection
            raise BatchDownloadRefusedError(f"{where} could not be read, so nothing was landed: {failure}") \
                from failure
        retryable = isinstance(failure, OutputNotReadyError) or is_retryable(failure, idempotent=True)
        if not retryable:  # the hooks' one rule: a batch the API does not know, a redirect, ...
            # A batch the wait saw finish that the API now says it does not know (another host, or its
            # output expired) stays unknown on every try; the router not configured may be fixed later.
            unknown = isinstance(failure, BatchNotFoundError)
            error = BatchDownloadRefusedError if unknown else BatchDownloadError
            raise error(f"{where} could not be read, and trying again cannot help, so nothing was landed: "
                        f"{failure}") from failure
        try:
            delay = retry.failed(ref.batch_id, failure, started=started)
        except GaveUp as exc:
            raise BatchDownloadError(f"{where} could not be read, so nothing was landed: {exc}. The batches "
                                     f"read so far are kept in {self.spool.path}: a retry of this task on "
                                     "this machine reads only the others") from failure
        self.log.warning("Reading %s failed (%s); reading it again in %.1f s, the other batches meanwhile",
                         where, failure, delay)
        return delay

    def _attributed(self, output: list[OutputLine], expected: dict[str, Any]) -> dict[str, OutputLine]:
        """One line per row the batch carried; the other lines are counted, never loaded."""
        counts = self.counts
        seen: dict[str, OutputLine] = {}
        for line in output:
            if not line.custom_id:
                counts.unattributable_lines += 1
            elif line.custom_id not in expected:
                counts.unknown_lines += 1
            elif line.custom_id in seen:
                counts.duplicate_lines += 1
                if line.ok and not seen[line.custom_id].ok:  # a result beats an error for one id
                    seen[line.custom_id] = line
            else:
                seen[line.custom_id] = line
        return seen

    def _read(self, ref: BatchRef) -> tuple[BatchState | None, str, list[OutputLine]]:
        """A batch as :meth:`download` left it: its state, as the API spells it, and its lines."""
        if ref.abandoned:  # no batch id came back: nothing was asked
            return None, "", []
        if ref.batch_id in self._states:
            return *self._states[ref.batch_id], []
        lines = self.spool.read(ref.batch_id)
        if lines is None:
            raise BatchDownloadError(f"batch {ref.batch_id} of job {self.manifest.job_id} is no longer in the "
                                     f"spool at {self.spool.path} (removed while the load ran?); nothing was landed")
        return BatchState.COMPLETED, "completed", lines

    def __iter__(self) -> Iterator[pa.RecordBatch]:
        manifest, columns, counts = self.manifest, self.columns, self.counts
        cursor = _RowsCursor(self.location / ROWS_FILE)
        progress = ProgressLog(self.log, "Accounted for", "batches", len(manifest.batches))
        buffer = columns.buffer()
        try:
            for number, ref in enumerate(manifest.batches, start=1):
                state, raw_status, output = self._read(ref)
                custom_ids, ids, fingerprints = cursor.take(ref.rows)
                absent: list[int] = []  # positions of rows that came back with no line
                if state is None:
                    absent = list(range(len(ids)))
                    code, message = ABANDONED_CODE, ("this row's chunk was sent, but no batch id came back; it was "
                                                     "abandoned (on_ambiguous='abandon') and may have been billed")
                elif state is BatchState.COMPLETED:
                    if [line.custom_id for line in output] == custom_ids:  # the common case: a line a row, in order
                        lines = output
                        ok = buffer.add_lines(ref.batch_id, ids, fingerprints, lines)
                    else:
                        position = {cid: i for i, cid in enumerate(custom_ids)}
                        seen = self._attributed(output, position)
                        lines = list(seen.values())
                        at = [position[cid] for cid in seen]
                        ok = buffer.add_lines(ref.batch_id, [ids[i] for i in at], [fingerprints[i] for i in at], lines)
                        absent = [i for cid, i in position.items() if cid not in seen]
                    counts.ok += ok
                    counts.error += len(lines) - ok
                    code, message = "no_output_line", "the batch completed without a line for this row"
                else:
                    absent = list(range(len(ids)))
                    code = "batch_failed" if state is BatchState.FAILED else "batch_not_finished"
                    message = f"batch {ref.batch_id} is {raw_status}; its rows did not come back"
                if absent:
                    buffer.add_missing(ref.batch_id, [ids[i] for i in absent], [fingerprints[i] for i in absent],
                                       code, message)
                counts.missing += len(absent)
                counts.rows += len(ids)
                progress.update(number, counts.describe())
                if len(buffer) >= RECORD_BATCH_ROWS:
                    yield buffer.to_record_batch()
                    buffer = columns.buffer()
            if len(buffer):
                yield buffer.to_record_batch()
        finally:
            cursor.close()
