"""Sending a job's chunks: ``concurrency`` calls at once, the ledger kept in step with every outcome.

:class:`SendTracker` is the window of chunks between the queue and the ledger: which are marked in
flight, under way, settled or waiting to be sent again. :class:`~.submission.Submission` decides
what to send (what earlier tries left) and what a failure means for the task.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING, Any

from airflow_batch_provider.hooks.batch_api import BatchApiHook
from airflow_batch_provider.hooks.retry import is_retryable, surely_not_created as not_created_by
from airflow_batch_provider.job.budget import budget_for
from airflow_batch_provider.job.errors import (
    GaveUp,
    NotSent as NotSent,
    SubmitGaveUpError,
)
from airflow_batch_provider.job.ledger import LedgerEntry
from airflow_batch_provider.job.retry_by_time import RetryByTime
from airflow_batch_provider.logs import ProgressLog

if TYPE_CHECKING:
    from airflow_batch_provider.job.submission import Submission


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
