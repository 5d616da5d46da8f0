"""Submitting a job: rows -> spool -> identity -> send -> record.

1. :func:`spool_rows` validates and encodes every row into a local :class:`RequestSpool`; nothing
   is paid for until the whole input has passed.
2. :func:`job_identity` names what shapes the batches (rows, model, request parameters, batch
   limits); :func:`job_id_for` adds the task instance (dag, task, run, map index). Any try of the
   same task on the same input and settings gets the same job id and the same ``Idempotency-Key``
   per chunk, with or without a ledger.
3. :class:`Submission` sends the chunks the ledger does not show as accepted, ``concurrency`` at
   once (:class:`.send_tracker.SendTracker`), and records every outcome (:mod:`.ledger`) before it fails or returns.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import pyarrow as pa
import pyarrow.compute as pc
from airflow.sdk import ObjectStoragePath
from airflow.sdk.exceptions import AirflowFailException

from airflow_batch_provider.hooks.settings import BatchLimits
from airflow_batch_provider.hooks.thread_hooks import ThreadHooks
from airflow_batch_provider.job.errors import (
    AmbiguousSubmissionError,
    InputChangedError,
    InvalidRowsError,
    NotSent,
    SubmitGaveUpError as SubmitGaveUpError,  # raised by the send, importable here as before
)
from airflow_batch_provider.job.ledger import Ledger, LedgerEntry
from airflow_batch_provider.job.manifest import (
    ABANDONED,
    ABANDONED_CODE,
    BatchRef,
    JobReference,
    mark_submitting,
    read_manifest,
    submitting_marked,
)
from airflow_batch_provider.job.send_tracker import (
    AHEAD as AHEAD,  # importable here as before
    SendTracker,
    surely_not_created as surely_not_created,  # importable here as before
)
from airflow_batch_provider.job.spool import RequestSpool
from airflow_batch_provider.logs import TaskLog
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


def dry_run_report(job_id: str, spooled: SpooledRows, log: TaskLog) -> JobReference:
    """What a dry run hands downstream, and logs: the job it would send, and nothing paid for."""
    spool = spooled.spool
    log.info("Dry run, nothing submitted: job %s would send %d rows in %d batches (%d bytes); %d invalid rows "
             "left out, %d already landed", job_id, spool.rows, len(spool.chunks), spool.bytes, spooled.invalid,
             spooled.skipped)
    return {"dry_run": True, "job_id": job_id, "rows": spool.rows, "batches": len(spool.chunks),
            "bytes": spool.bytes, "invalid_rows": spooled.invalid, "skipped_rows": spooled.skipped}


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
