"""Submitting a job: rows -> spool -> identity -> send -> record.

1. :func:`spool_rows` validates and encodes every row into a local :class:`RequestSpool`; nothing
   is paid for until the whole input has passed.
2. :func:`job_identity` names what shapes the batches (rows, model, request parameters, batch
   limits); :func:`job_id_for` adds the task instance (dag, task, run, map index). Any try of the
   same task on the same input and settings gets the same job id and the same ``Idempotency-Key``
   per chunk, with or without a ledger.
3. :class:`Submission` sends the chunks the ledger does not show as accepted, ``concurrency`` at
   once (:class:`SendTracker`), and records every outcome (:mod:`.ledger`) before it fails or returns.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import pyarrow as pa
import pyarrow.compute as pc
from airflow.sdk import ObjectStoragePath
from airflow.sdk.exceptions import AirflowFailException

from airflow_batch_provider.hooks.batch_api import BatchApiHook, ThreadHooks
from airflow_batch_provider.hooks.retry import is_retryable, surely_not_created as not_created_by
from airflow_batch_provider.hooks.settings import BatchLimits
from airflow_batch_provider.job.budget import budget_for
from airflow_batch_provider.job.errors import (
    AmbiguousSubmissionError,
    InputChangedError,
    InvalidRowsError,
    SubmitGaveUpError,
)
from airflow_batch_provider.job.ledger import Ledger, LedgerEntry
from airflow_batch_provider.job.manifest import (
    ABANDONED,
    ABANDONED_CODE,
    BatchRef,
    mark_submitting,
    read_manifest,
    submitting_marked,
)
from airflow_batch_provider.job.retry_by_time import GaveUp, RetryByTime
from airflow_batch_provider.job.spool import RequestSpool
from airflow_batch_provider.logs import ProgressLog, TaskLog
from airflow_batch_provider.protocol import InvalidRequestError, Request
from airflow_batch_provider.tabular.rows_to_requests import InvalidRow, RowEncoder

SHOWN_INVALID = 10
ON_AMBIGUOUS = ("fail", "resubmit", "abandon")
ON_INPUT_CHANGE = ("fail", "restart")


@dataclass
class SpooledRows:
    """What reading the input left: the spool, the id type, and the rows left out or skipped."""
    spool: RequestSpool
    id_type: pa.DataType
    seen: int = 0
    invalid: int = 0
    skipped: int = 0
    invalid_examples: list[InvalidRow] = field(default_factory=list)


def spool_rows(batches: Iterable[pa.RecordBatch], encoder: RowEncoder, directory: Path, *, limits: BatchLimits,
               landed: Callable[[list], Mapping[str, str]] | None = None, allow_empty: bool = False,
               on_invalid_rows: str = "fail", log: TaskLog) -> SpooledRows:
    """Every row validated, encoded and written to a spool in ``directory``, cut into chunks within
    ``limits``; ``landed`` answers, for a batch's ids, the fingerprints already landed (rows whose
    fingerprint matches are skipped). Raises :class:`InvalidRequestError` (whole input, or a row
    whose request cannot fit in a batch) or :class:`InvalidRowsError` (named rows)."""
    result: SpooledRows | None = None
    for batch in batches:
        if result is None:
            id_type = encoder.check_schema(batch.schema)
            result = SpooledRows(RequestSpool(directory, id_type, limits), id_type)
        result.seen += batch.num_rows
        encoded = encoder.encode(batch)
        result.invalid += len(encoded.invalid)
        result.invalid_examples.extend(encoded.invalid[: max(0, SHOWN_INVALID - len(result.invalid_examples))])
        lines, ids, custom_ids, fingerprints = encoded.lines, encoded.ids, encoded.custom_ids, encoded.fingerprints
        if landed is not None:  # asked for this batch's ids only: memory does not grow with the table
            found = landed(ids.to_pylist())
            pairs = zip(custom_ids.to_pylist(), fingerprints.to_pylist(), strict=True)
            keep = [found.get(cid) != fp for cid, fp in pairs]
            result.skipped += keep.count(False)
            if not all(keep):
                mask = pa.array(keep)
                lines, ids, custom_ids, fingerprints = (a.filter(mask) for a in (lines, ids, custom_ids, fingerprints))
        sizes = pc.binary_length(lines)
        if len(lines) and pc.max(sizes).as_py() > limits.max_bytes:  # the one check before paying
            first = pc.index(pc.greater(sizes, limits.max_bytes), True).as_py()
            raise InvalidRequestError(
                f"row {custom_ids[first].as_py()!r}: its request line is longer than max_bytes_per_batch="
                f"{limits.max_bytes}; raise max_bytes_per_batch or lower max_text_bytes")
        result.spool.add(lines, ids, custom_ids, fingerprints)
    if result is None or result.seen == 0:
        if not allow_empty:
            raise InvalidRequestError("the input holds no rows: nothing to submit (pass allow_empty=True "
                                      "if an empty input is normal for this task)")
        log.info("The input holds no rows (allow_empty=True): an empty job")
        result = result or SpooledRows(RequestSpool(directory, pa.string(), limits), pa.string())
    if result.invalid and on_invalid_rows == "fail":
        raise InvalidRowsError(result.invalid_examples, result.invalid, result.seen)
    if result.invalid:
        log.warning("%d of %d rows left out (on_invalid_rows='skip'), e.g. %s", result.invalid, result.seen,
                    "; ".join(f"{r.row_id!r}: {r.reason}" for r in result.invalid_examples))
    result.spool.close()
    return result


def job_identity(rows_digest: str, request: Request, limits: BatchLimits) -> str:
    """What shapes the job's batches; a retry whose identity differs is a different job."""
    shape = msgspec.json.encode({"rows": rows_digest, "model": request.model, "params": request.params(),
                                 "max_items_per_batch": limits.max_items, "max_bytes_per_batch": limits.max_bytes},
                                order="sorted")
    return hashlib.sha256(shape).hexdigest()


def task_identity(context: Mapping[str, Any]) -> str:
    """The task instance a job belongs to: its tries share it; other runs and map indexes do not."""
    ti = context.get("ti")
    parts = [getattr(ti, name, "") for name in ("dag_id", "task_id", "run_id", "map_index")] if ti else []
    return "\x1f".join(str(part) for part in parts)


def job_id_for(task: str, identity: str) -> str:
    """The job's id: the same for the same task and input, so a retry finds its job."""
    return "job-" + hashlib.blake2b(f"{task}\x1e{identity}".encode(), digest_size=10).hexdigest()


def idempotency_key(job_id: str, chunk: int) -> str:
    """The ``Idempotency-Key`` of one chunk of a job: the same on every resend."""
    return f"{job_id}:{chunk}"


class NotSent(Exception):
    """Raised on the way to the POST (connection lookup, reading the spool): nothing left."""


def surely_not_created(exc: BaseException) -> bool:
    """True when a failed POST cannot have created a batch (it was refused, or never sent); which
    answers say so is the hooks' one rule (:func:`airflow_batch_provider.hooks.retry.rule_for`)."""
    return isinstance(exc, NotSent) or not_created_by(exc)


AHEAD = 4  # chunks the ledger may show in flight, per concurrent call: queued + under way + settled, not yet written


class _Unsent(Exception):
    """A queued chunk that was not sent because an earlier call failed."""




class SendTracker:
    """Sends a job's pending chunks, ``concurrency`` calls at once, and keeps the ledger in step.

    A chunk is marked in flight in the ledger before it is handed to the pool; the same write records
    the outcomes that came back since the last one. Writes run on a thread of their own, so calls go
    on while one is on its way (a write costs tens of milliseconds, as much as several calls). The
    pool and the write under way hold at most ``AHEAD × concurrency`` unsettled chunks, so a try killed
    at any moment leaves at most that many chunks in flight in the ledger.

    A call that failed (each is tried once: see job/retry_by_time.py), where sending it again is
    safe (it surely created no batch, or the server honours its ``Idempotency-Key``:
    ``retry_ambiguous_submits``), goes back in the queue with backoff while the others are sent
    (:class:`RetryByTime`); the try gives up on it
    only after the connection's ``retry_total_timeout``. After any other failure nothing new starts:
    queued chunks are taken back (never sent), the calls under way finish, and every outcome is
    written before the exception goes on, also when the try itself is stopped (a task timeout, a
    failed ledger write).
    """


    def __init__(self, submission: Submission, entry: LedgerEntry, pending: list[int]) -> None:
        self.submission = submission
        self.ledger = submission.ledger
        self.entry = entry
        self.concurrency = submission.concurrency
        self.limit = AHEAD * submission.concurrency
        self.inherited = set(entry.in_flight)  # maybe created by an earlier try: only an acceptance clears them
        self.maybe_created: set[int] = set()  # a call of this try may have created them: the same
        # Inherited chunks first: they are in flight in the ledger already, and count against the limit.
        self.queue = deque(sorted(pending, key=lambda chunk: (chunk not in self.inherited, chunk)))
        self.running: dict[Future, int] = {}
        self.failed: dict[int, BaseException] = {}
        self.changed: set[int] = set()  # windows whose ledger key is out of date
        self.writing: Future | None = None
        self.marking: list[int] = []  # chunks the write under way marks: queued once it has landed
        self.writing_windows: set[int] = set()  # the windows of the write under way
        self.stopped = threading.Event()  # set by the thread whose call failed, before a queued call can start
        self.progress = ProgressLog(submission.log, "Submitted", "batches", entry.chunks)
        settings = BatchApiHook(submission.batch_api_conn_id).settings
        self.retry = RetryByTime.of(settings)
        self.started: dict[int, float] = {}  # when each chunk's last call began
        self.delayed: dict[int, float] = {}  # chunks to send again, and when
        # The calls share one request budget, as a load's downloads do (job/budget.py): as fast as
        # the threads allow until the API asks one of them to slow down; then every call waits and
        # goes on paced (a thread freed by a 429 would otherwise send the next chunk at once).
        self.budget = budget_for(settings, None, self.concurrency, submission.log, "Submit requests", unpaced=True)
        submission._hooks.on_throttled = self.budget.slow_down  # before this run's threads make their hooks

    def run(self) -> dict[int, BaseException]:
        """Send every pending chunk and return the failures, by chunk."""
        pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="scaledown-submit")
        writer = ThreadPoolExecutor(1, thread_name_prefix="scaledown-ledger")
        try:
            while True:
                self._requeue_due()
                if self.writing is None and not self.failed:
                    self._start_write(writer)
                if not self.running and self.writing is None:
                    if self.failed or not self.delayed:
                        break
                    time.sleep(self._until_due() or 0.0)  # every chunk left waits to be sent again
                    continue
                done, _ = wait({*self.running, *filter(None, [self.writing])}, timeout=self._until_due(),
                               return_when=FIRST_COMPLETED)
                for future in done:
                    if future is self.writing:
                        self._written(pool)
                    else:
                        self._settle(future)
                if self.failed:
                    self._stop()
                self.budget.each_second()  # grows back while answers come quickly
                self._progress()
        finally:
            self.budget.stop()  # calls waiting for a turn end unsent
            pool.shutdown(wait=True, cancel_futures=True)  # the calls under way finish; queued ones never start
            writer.shutdown(wait=True)
            for future in list(self.running):
                self._settle(future)
            self._unmark(self.marking)
            self.marking = []
            self.changed |= self.writing_windows  # a write that failed or was never seen through: again
            self._write_now()
        return self.failed

    def _start_write(self, writer: ThreadPoolExecutor) -> None:
        """Mark the next chunks in flight, with what came back since the last write, in one write
        made on the writer's thread; when too few can be marked to be worth a write, wait."""
        room = self.limit - len(self.running) - len(self.delayed.keys() & self.entry.in_flight)
        if not self.queue or room < min(2 * self.concurrency, len(self.queue)):
            return
        self.marking = [self.queue.popleft() for _ in range(min(room, len(self.queue)))]
        for chunk in self.marking:
            if chunk not in self.entry.in_flight:
                self.entry.in_flight.add(chunk)
                self.changed.add(self.entry.window_of(chunk))
        values = self._changed_values()  # taken now: the entry changes while the write is on its way
        self.writing_windows = set(values)
        self.writing = writer.submit(self.ledger.write_values, values)

    def _written(self, pool: ThreadPoolExecutor) -> None:
        assert self.writing is not None
        writing, self.writing = self.writing, None
        writing.result()  # a failed write stops the try (run's finally unmarks its chunks, writes its windows)
        self.writing_windows = set()
        if self.failed:
            self._unmark(self.marking)
            self.marking = []
            return
        while self.marking:  # each chunk leaves `marking` only once it is in `running`: a timeout loses none
            self.running[pool.submit(self._call, self.marking[0])] = self.marking[0]
            self.marking.pop(0)

    def _call(self, chunk: int) -> str:
        if self.stopped.is_set() or not self.budget.wait_turn():
            raise _Unsent
        self.started[chunk] = sent = time.monotonic()
        try:
            batch_id = self.submission._send(self.entry.job_id, chunk)
        except Exception as exc:
            if not self._may_send_again(exc):
                self.stopped.set()
            raise
        self.budget.answered(time.monotonic() - sent)
        return batch_id

    def _may_send_again(self, exc: BaseException) -> bool:
        """The hooks' one rule: trying again may help, and cannot pay twice (see the class)."""
        return not isinstance(exc, NotSent) and is_retryable(exc, idempotent=self.submission.retry_ambiguous)

    def _send_again_later(self, chunk: int, exc: BaseException) -> bool:
        """Put a failed chunk back to be sent after a backoff; False when the try must stop instead."""
        if self.failed or not self._may_send_again(exc):
            return False
        try:
            delay = self.retry.failed(chunk, exc, started=self.started.get(chunk))
        except GaveUp as gave_up:
            self.stopped.set()
            error = SubmitGaveUpError(f"chunk {chunk}{self._ids(chunk)} of job {self.entry.job_id} was not "
                                      f"accepted: {gave_up}. The batches accepted so far are recorded: a retry of "
                                      "the task sends only the others")
            error.__cause__ = exc
            self.failed[chunk] = error
            return False
        self._forget_if_not_created(chunk, exc)
        self.delayed[chunk] = time.monotonic() + delay
        self.submission.log.warning("Chunk %d was not accepted (%s); sending it again in %.1f s, the others "
                                    "meanwhile", chunk, exc, delay)
        return True

    def _ids(self, chunk: int) -> str:
        """`` (ids 'a' to 'z')`` for a message; nothing if the rows file cannot be read (the
        outcome is recorded whatever the message says)."""
        try:
            first, last = self.submission.spool.first_and_last_ids([self.submission.spool.chunks[chunk]])[0]
        except Exception:  # noqa: BLE001 - a message must not stop the ledger's last write
            return ""
        return f" (ids {first!r} to {last!r})"

    def _forget_if_not_created(self, chunk: int, exc: BaseException) -> None:
        """Clear a chunk from the ledger's in-flight set when this failure says no batch was made —
        unless an earlier try or an earlier call of this one may have made one."""
        if not surely_not_created(exc):
            self.maybe_created.add(chunk)
        elif chunk not in self.inherited and chunk not in self.maybe_created:
            self.entry.in_flight.discard(chunk)

    def _requeue_due(self) -> None:
        now = time.monotonic()
        for chunk in [c for c, due in self.delayed.items() if due <= now]:
            del self.delayed[chunk]
            self.queue.appendleft(chunk)

    def _until_due(self) -> float | None:
        return max(0.0, min(self.delayed.values()) - time.monotonic()) if self.delayed else None

    def _settle(self, future: Future) -> None:
        chunk = self.running[future]  # popped once the outcome is recorded: a timeout loses none
        self.changed.add(self.entry.window_of(chunk))
        try:
            if future.cancelled():
                raise _Unsent
            self.entry.accepted[chunk] = future.result()
            self.entry.in_flight.discard(chunk)
            self.retry.succeeded(chunk)
        except _Unsent:
            self._unmark([chunk])
        except Exception as exc:  # noqa: BLE001 - classified here, raised by Submission._fail
            if not self._send_again_later(chunk, exc):
                self.failed.setdefault(chunk, exc)
                self._forget_if_not_created(chunk, exc)
        del self.running[future]

    def _unmark(self, chunks: list[int]) -> None:
        """Chunks marked but never sent (by this call: one sent before may have created a batch)."""
        for chunk in chunks:
            if chunk not in self.inherited and chunk not in self.maybe_created:
                self.entry.in_flight.discard(chunk)
                self.changed.add(self.entry.window_of(chunk))

    def _stop(self) -> None:
        self.queue.clear()
        self.delayed.clear()  # those that may exist stay in flight in the ledger: resent with their key
        for future in self.running:
            future.cancel()  # queued, never sent: settled as unsent

    def _changed_values(self) -> dict[int, dict[str, Any]]:
        values = {window: self.ledger.window_value(self.entry, window) for window in sorted(self.changed)}
        self.changed.clear()
        return values

    def _write_now(self) -> None:
        if self.changed:
            self.ledger.write_values(self._changed_values())

    def _progress(self) -> None:
        self.progress.update(len(self.entry.accepted), f"{len(self.entry.in_flight)} in flight")


class Submission:
    """Sends one spooled job and keeps its ledger.

    :param retry_ambiguous: the connection says the server honours ``Idempotency-Key``, so a chunk
        that may exist is resent with the same key (the server returns the batch it made).
    :param on_ambiguous: ``"fail"``, ``"resubmit"`` or ``"abandon"``: what a try does with chunks an
        earlier try left in flight when ``retry_ambiguous`` is off (abandoned chunks are never resent;
        their rows land ``missing``).
    :param on_input_change: ``"fail"`` or ``"restart"``: what a try does when an earlier try of
        this task paid for a job of another identity.
    :param earlier_tries: this is not the task's first try (without a ledger, it cannot know what
        those tries paid for, so it sends nothing unless resending is safe or asked for).
    :param job_dir: the job's folder in the manifest storage: marked before the first POST, so a try
        that finds the mark but no ledger (expired or cleared) treats every chunk as possibly paid for.
    """

    def __init__(self, *, batch_api_conn_id: str, spool: RequestSpool, identity: str, task: str, ledger: Ledger,
                 concurrency: int, limits: BatchLimits, retry_ambiguous: bool,
                 on_ambiguous: str = "fail", on_input_change: str = "fail", earlier_tries: bool = False,
                 job_dir: ObjectStoragePath | None = None, log: TaskLog) -> None:
        self.batch_api_conn_id = batch_api_conn_id
        self.spool = spool
        self.identity = identity
        self.task = task
        self.ledger = ledger
        self.concurrency = concurrency
        self.limits = limits
        self.retry_ambiguous = retry_ambiguous
        self.on_ambiguous = on_ambiguous
        self.on_input_change = on_input_change
        self.earlier_tries = earlier_tries
        self.job_dir = job_dir
        self.log = log
        self.entry: LedgerEntry | None = None
        self.abandoned: set[int] = set()  # left in flight by an earlier try, never resent (on_ambiguous="abandon")
        self.job_id = job_id_for(task, identity)
        self._hooks = ThreadHooks(batch_api_conn_id, one_attempt=True)  # a chunk is retried by time (SendTracker)

    # -- what earlier tries did ---------------------------------------------------------------------
    def _entry(self) -> LedgerEntry:
        """The ledger entry of this job: resumed from an earlier try, or started now."""
        chunks = len(self.spool.chunks)
        previous = self.ledger.load()
        if previous is not None and previous.identity != self.identity:
            if self.on_input_change == "fail":
                raise InputChangedError(
                    f"an earlier try of this task submitted job {previous.job_id} for different input or "
                    f"settings (rows, model, request parameters or batch limits changed; identity "
                    f"{previous.identity[:12]}…, now {self.identity[:12]}…); its {previous.paid()} "
                    "accepted batches are paid for. Restore the input and settings, or set "
                    "on_input_change='restart' to submit anew.")
            self.log.warning("Input or settings changed since job %s (%d batches paid for); starting over "
                             "(on_input_change='restart')", previous.job_id, previous.paid())
            self.ledger.forget()
            previous = None
        if previous is not None:
            self.log.info("Resuming job %s submitted by an earlier try: %d of %d batches accepted, %d in flight",
                          previous.job_id, len(previous.accepted), chunks, len(previous.in_flight))
            return previous
        if self.job_dir is not None and submitting_marked(self.job_dir):
            return self._lost_ledger(chunks)
        if not self.ledger.durable:
            if self.earlier_tries and not (self.retry_ambiguous or self.on_ambiguous == "resubmit"):
                raise AmbiguousSubmissionError(self.job_id, {}, (
                    "this is a retry and there is no task_state_store, so which of the job's "
                    f"{chunks} chunks an earlier try paid for is unknown"))
            self.log.warning("task_state_store is not available: a retry of this task cannot tell which "
                             "batches this try paid for")
        entry = LedgerEntry(job_id=self.job_id, identity=self.identity, chunks=chunks)
        self.ledger.start(entry)
        if self.job_dir is not None:
            mark_submitting(self.job_dir, self.job_id)
        return entry

    def _lost_ledger(self, chunks: int) -> LedgerEntry:
        """An earlier try started this job, but the ledger holds nothing of it (its keys were deleted
        or expired): any chunk may be paid for, so every one is in flight, recorded as such."""
        self.log.warning("An earlier try started submitting job %s, but the task's ledger holds nothing of it "
                         "(cleared or expired): all %d chunks are treated as possibly paid for", self.job_id, chunks)
        entry = LedgerEntry(job_id=self.job_id, identity=self.identity, chunks=chunks, in_flight=set(range(chunks)))
        self.ledger.start(entry)
        self.ledger.write_values({window: self.ledger.window_value(entry, window) for window in range(entry.windows())})
        return entry

    def _check_in_flight(self, entry: LedgerEntry) -> None:
        if not entry.in_flight:
            return
        if self.retry_ambiguous:
            self.log.info("%d chunk(s) were in flight when an earlier try ended; resending them with the same "
                          "Idempotency-Key (retry_ambiguous_submits: the server returns the batch it made)",
                          len(entry.in_flight))
        elif self.on_ambiguous == "resubmit":
            self.log.warning("%d chunk(s) were in flight when an earlier try ended and may already be billed; "
                             "resending them as asked (on_ambiguous='resubmit'): POSSIBLE DOUBLE CHARGE for "
                             "chunks %s", len(entry.in_flight), sorted(entry.in_flight)[:20])
        elif self.on_ambiguous == "abandon":
            self.abandoned = set(entry.in_flight)
            self.log.warning("%d chunk(s) were in flight when an earlier try ended and may already be billed; they "
                             "are not resent (on_ambiguous='abandon'): their %d rows land as 'missing' "
                             "(error_code %r). Chunks %s", len(self.abandoned),
                             sum(self.spool.chunks[c].rows for c in self.abandoned), ABANDONED_CODE,
                             sorted(self.abandoned)[:20])
        else:
            raise self._ambiguous(entry, sorted(entry.in_flight), "an earlier try ended while they were in flight")

    def _ambiguous(self, entry: LedgerEntry, chunks: list[int], cause: str) -> AmbiguousSubmissionError:
        spans = self.spool.first_and_last_ids([self.spool.chunks[chunk] for chunk in chunks])
        named = {chunk: (idempotency_key(entry.job_id, chunk), first, last, self.spool.chunks[chunk].rows)
                 for chunk, (first, last) in zip(chunks, spans, strict=True)}
        return AmbiguousSubmissionError(entry.job_id, named, cause)

    # -- sending ------------------------------------------------------------------------------------
    def _send(self, job_id: str, chunk: int) -> str:
        try:  # everything before the POST: a failure here means nothing was sent
            hook = self._hooks.get()
            hook.session  # noqa: B018 - the connection lookup (once per thread), done here, not mid-request
            lines = self.spool.read_chunk(self.spool.chunks[chunk])
        except Exception as exc:
            raise NotSent(f"chunk {chunk} was not sent: {exc}") from exc
        return hook.submit_batch(lines, idempotency_key=idempotency_key(job_id, chunk),
                                 limits=self.limits).batch_id

    def run(self) -> list[BatchRef]:
        """Send what is not accepted yet; the job's batches, in chunk order."""
        entry = self.entry = self._entry()
        if entry.complete:
            self.log.info("Job %s was wholly submitted by an earlier run of this task; its manifest is at %s",
                          entry.job_id, entry.complete)
            return read_manifest(entry.complete)[0].batches
        self._check_in_flight(entry)
        pending = [c for c in range(entry.chunks) if c not in entry.accepted and c not in self.abandoned]
        if entry.accepted:
            self.log.info("%d of %d batches were accepted by an earlier try; submitting %d",
                          len(entry.accepted), entry.chunks, len(pending))
        failed = self._send_all(entry, pending)
        if failed:
            self._fail(entry, failed)
        return [BatchRef(entry.accepted.get(i, ABANDONED), chunk.first_row, chunk.rows)
                for i, chunk in enumerate(self.spool.chunks)]

    def _send_all(self, entry: LedgerEntry, pending: list[int]) -> dict[int, BaseException]:
        return SendTracker(self, entry, pending).run()

    def _fail(self, entry: LedgerEntry, failed: dict[int, BaseException]) -> None:
        """Raise for the failed calls, once every outcome is recorded."""
        ambiguous = [chunk for chunk in failed if chunk in entry.in_flight]
        first = next(iter(failed.values()))
        self.log.error("%d calls failed (%d may have created a batch); %d batches accepted "
                       "so far are recorded. First failure: %s", len(failed), len(ambiguous), len(entry.accepted),
                       first)
        if ambiguous and not (self.retry_ambiguous or self.on_ambiguous in ("resubmit", "abandon")):
            raise self._ambiguous(entry, ambiguous, str(failed[ambiguous[0]])) from failed[ambiguous[0]]
        # A retry sends what is not accepted: in-flight chunks again with the same key, or (abandon) never.
        for failure in failed.values():  # a key or a setting met before a POST: no retry fixes it
            if isinstance(failure, NotSent) and isinstance(failure.__cause__, AirflowFailException):
                raise failure.__cause__
        raise first
