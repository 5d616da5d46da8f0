"""Streams a job's output back, batch by batch, and accounts for every submitted row.

For each batch of the manifest the rows it carried are read from the job's rows file (in order, a
batch's worth at a time), its output is streamed, and each row becomes ``ok`` or ``error`` from its
output line, or ``missing`` when no line came back (or the batch failed). Lines for ids the batch did
not carry, second lines for an id, and lines without an id are counted, never loaded.
Downloads run ahead by a bounded number of batches; memory holds those and one batch's results.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, fields
from itertools import islice
from typing import Any

import pyarrow as pa
from airflow.sdk import ObjectStoragePath
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from airflow_batch_provider.hooks.batch_api import BatchApiHook, ThreadHooks
from airflow_batch_provider.hooks.errors import BatchNotFoundError
from airflow_batch_provider.job.budget import RequestBudget, budget_for
from airflow_batch_provider.job.manifest import ABANDONED_CODE, ROWS_FILE, BatchRef, JobManifest
from airflow_batch_provider.logs import ProgressLog
from airflow_batch_provider.protocol import BatchState, OutputLine
from airflow_batch_provider.tabular.results_to_columns import RECORD_BATCH_ROWS, ResultColumns


@dataclass
class LoadCounts:
    rows: int = 0
    ok: int = 0
    error: int = 0
    missing: int = 0
    duplicate_lines: int = 0
    unknown_lines: int = 0
    unattributable_lines: int = 0

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def describe(self) -> str:
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


class BatchDownloadError(AirflowException):
    """A batch's status or output could not be read, after the hook's retries; nothing was landed."""


class BatchDownloadRefusedError(BatchDownloadError, AirflowFailException):
    """A batch cannot be read as the connection is set (a refused key, an untrusted certificate, a
    proxy refusing its credentials): a retry of the task cannot help until the connection changes."""


class Reconciliation:
    """Iterate for record batches of typed result rows (of about ``RECORD_BATCH_ROWS`` rows, whatever
    the size of the API batches); :attr:`counts` holds the
    tally of what has been read so far (complete once iteration ends).

    Status and output of up to ``concurrency`` batches are fetched at once (each network round trip
    costs time, not CPU), and handed on in manifest order, so memory holds at most ``concurrency``
    batches whatever the job's size.
    """

    def __init__(self, conn_id: str, manifest: JobManifest, location: ObjectStoragePath,
                 columns: ResultColumns, log, concurrency: int = 8) -> None:
        self.conn_id = conn_id
        self.manifest = manifest
        self.location = location
        self.columns = columns
        self.log = log
        self.concurrency = concurrency
        self.counts = LoadCounts()
        # The downloads share one request budget, as a wait's status reads do (job/budget.py): as
        # fast as max_concurrent_downloads allow (under the connection's max_requests_per_minute)
        # until the API asks one of them to slow down; then together, at once, paced from half the
        # rate it was answering, growing back while answers come back quickly.
        self._budget: RequestBudget | None = None
        self._hooks = ThreadHooks(conn_id)
        self._round_trips: list[float] = []

    def _fetch(self, ref: BatchRef) -> tuple[BatchState | None, str, list[OutputLine]]:
        """A batch's state, as the API spells it, and its output lines. The output is asked for
        first: a completed batch (the common case, right after the wait) costs one request. Only
        when there is none yet (404: not finished, failed, or unknown) is the status read."""
        if ref.abandoned:  # no batch id came back: nothing to ask for
            return None, "", []
        assert self._budget is not None  # set by _downloads, which runs this
        if not self._budget.wait_turn():
            raise BatchDownloadError(f"batch {ref.batch_id} was not read: the load stopped")
        hook = self._hooks.get()
        sent = time.monotonic()
        try:
            return BatchState.COMPLETED, "completed", self._output(hook, ref)
        except BatchNotFoundError:
            status = hook.get_batch(ref.batch_id)  # an unknown batch raises BatchNotFoundError again
        finally:
            self._round_trips.append(time.monotonic() - sent)  # list.append: safe from the threads
        if status.state is not BatchState.COMPLETED:
            return status.state, status.raw_status, []
        return status.state, status.raw_status, self._output(hook, ref)  # it completed in between

    def _output(self, hook: BatchApiHook, ref: BatchRef) -> list[OutputLine]:
        return list(hook.iter_output(ref.batch_id, expected_model=self.manifest.model))

    def _downloads(self) -> Iterator[tuple[BatchRef, BatchState | None, str, list[OutputLine]]]:
        refs = iter(self.manifest.batches)
        budget = self._budget = budget_for(BatchApiHook(self.conn_id).settings, None, self.concurrency, self.log,
                                           "Output requests", unpaced=True)
        self._hooks.on_throttled = budget.slow_down  # before the first thread's hook is made
        adapted_at, slowdowns = time.monotonic(), 0
        pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="scaledown-download")
        try:
            ahead: deque[tuple[BatchRef, Future]] = deque(
                (ref, pool.submit(self._fetch, ref)) for ref in islice(refs, self.concurrency))
            while ahead:
                ref, future = ahead.popleft()
                try:
                    state, raw_status, lines = future.result()
                except Exception as exc:
                    error = BatchDownloadRefusedError if isinstance(exc, AirflowFailException) else BatchDownloadError
                    when = "" if error is BatchDownloadRefusedError else " after retries"
                    raise error(f"batch {ref.batch_id} of job {self.manifest.job_id} could not be read{when}, "
                                f"so nothing was landed: {exc}") from exc
                following = next(refs, None)
                if following is not None:
                    ahead.append((following, pool.submit(self._fetch, following)))
                if time.monotonic() - adapted_at >= 1:  # a second's downloads are the budget's cycle
                    trips, self._round_trips = self._round_trips, []
                    told = budget.slowdowns  # read once: a slow_down between two reads would be lost
                    budget.cycle_done(len(trips), told - slowdowns, sum(trips) / len(trips) if trips else None,
                                      saturated=True, confirmed=len(trips))
                    adapted_at, slowdowns = time.monotonic(), told
                yield ref, state, raw_status, lines
        finally:
            budget.stop()  # threads waiting for a turn end without sending
            pool.shutdown(wait=True, cancel_futures=True)

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

    def __iter__(self) -> Iterator[pa.RecordBatch]:
        manifest, columns, counts = self.manifest, self.columns, self.counts
        cursor = _RowsCursor(self.location / ROWS_FILE)
        progress = ProgressLog(self.log, "Read", "batches", len(manifest.batches))
        buffer = columns.buffer()
        try:
            for number, (ref, state, raw_status, output) in enumerate(self._downloads(), start=1):
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
