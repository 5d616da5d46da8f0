"""The one decision "is this job done, failed, timed out, or still running?".

The trigger (async) and the sensor (its inline look and its pokes) feed batch statuses into a
:class:`JobProgress` and ask it for the :class:`Verdict`, so the modes cannot
disagree; what they raise for a verdict other than success is defined here too. Pure: no I/O, no
clock of its own (the caller passes ``now``).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from airflow.sdk.exceptions import AirflowException

from airflow_batch_provider.job.errors import (  # the wait's errors, importable from here as before
    BatchJobFailedError,
    BatchJobTimeoutError,
    BatchPollingError as BatchPollingError,
    BatchPollingRefusedError as BatchPollingRefusedError,
)
from airflow_batch_provider.job.manifest import JobManifest, JobReference
from airflow_batch_provider.protocol.status import BatchState, BatchStatus


class Verdict(str, enum.Enum):
    """Where a job's wait stands: still running, or finished one way."""
    RUNNING = "running"
    SUCCESS = "success"
    FAILED = "failed"
    TIMEOUT = "timeout"


@dataclass(frozen=True)
class Counts:
    """A job's progress: batches finished and failed, items answered and failed."""
    batches_total: int
    batches_done: int
    batches_failed: int
    items_total: int
    items_completed: int
    items_failed: int

    def describe(self) -> str:
        """The counts as the task log says them."""
        return (f"{self.batches_done}/{self.batches_total} batches finished"
                f"{f' ({self.batches_failed} failed)' if self.batches_failed else ''}; items: "
                f"{self.items_completed} completed, {self.items_failed} failed, of {self.items_total}")


class JobProgress:
    """Latest status of every batch of a job.

    Item-level failures do not fail a job: a batch that *completed* with failed items is a success
    here, and the loader decides with ``max_failed_ratio``. A batch that *failed* as a whole fails
    the job at once: its rows will not come back.
    """

    def __init__(self, batch_ids: Iterable[str], items_per_batch: dict[str, int] | None = None) -> None:
        self.batch_ids = list(batch_ids)
        self._expected = items_per_batch or {}
        self._latest: dict[str, BatchStatus] = {}
        # Finished batches taken back from an earlier poke (restore_finished): their state, and their
        # items (total, completed, failed) summed, as that poke kept them.
        self._settled: dict[str, BatchState] = {}
        self._settled_items: tuple[int, int, int] = (0, 0, 0)

    @classmethod
    def of(cls, manifest: JobManifest) -> JobProgress:
        """Every batch of the job, none seen yet (abandoned chunks have no batch to wait for)."""
        batches = [b for b in manifest.batches if not b.abandoned]
        return cls([b.batch_id for b in batches], {b.batch_id: b.rows for b in batches})

    def update(self, status: BatchStatus) -> bool:
        """Record a status; True when it changed what we knew."""
        before = self._latest.get(status.batch_id)
        self._latest[status.batch_id] = status
        return before is None or (before.state, before.done) != (status.state, status.done)

    def finished_state(self) -> dict[str, Any]:
        """What a rescheduled poke keeps for the next: which batches finished, run-length encoded by
        position with their state (``[first index, how many, state]``: a few entries when batches
        finish in order, whatever the job's size), and their items summed."""
        runs: list[list[Any]] = []
        items = list(self._settled_items)
        for index, batch_id in enumerate(self.batch_ids):
            state = self._settled.get(batch_id)
            status = self._latest.get(batch_id)
            if state is None and status is not None and status.terminal:
                state = status.state
                items = [items[0] + status.total, items[1] + status.completed, items[2] + status.failed]
            if state is None:
                continue
            if runs and runs[-1][0] + runs[-1][1] == index and runs[-1][2] == state.value:
                runs[-1][1] += 1
            else:
                runs.append([index, 1, state.value])
        return {"runs": runs, "items": items}

    def restore_finished(self, state: dict[str, Any]) -> None:
        """Take back what :meth:`finished_state` kept (of this same job's batches, none seen yet)."""
        for first, count, value in state["runs"]:
            for batch_id in self.batch_ids[first:first + count]:
                self._settled[batch_id] = BatchState(value)
        self._settled_items = tuple(state["items"])

    def running(self) -> list[str]:
        """Batches not known to be finished, in submission order."""
        return [b for b in self.batch_ids
                if b not in self._settled and not (b in self._latest and self._latest[b].terminal)]

    def failed(self) -> list[str]:
        """The batches that failed as a whole."""
        return [b for b in self.batch_ids if self._settled.get(b) is BatchState.FAILED
                or (b in self._latest and self._latest[b].state is BatchState.FAILED)]

    def counts(self) -> Counts:
        """The job's counts from the statuses seen so far."""
        latest = [s for b, s in self._latest.items() if b not in self._settled]
        settled = self._settled.values()
        total, completed, failed = self._settled_items
        items_total = sum(self._latest[b].total if b in self._latest else self._expected.get(b, 0)
                          for b in self.batch_ids if b not in self._settled)
        return Counts(
            batches_total=len(self.batch_ids),
            batches_done=sum(s.terminal for s in latest) + len(self._settled),
            batches_failed=sum(s.state is BatchState.FAILED for s in latest)
            + sum(state is BatchState.FAILED for state in settled),
            items_total=items_total + total,
            items_completed=sum(s.completed for s in latest) + completed,
            items_failed=sum(s.failed for s in latest) + failed,
        )

    def verdict(self, now: float, deadline: float | None) -> Verdict:
        """Running, or how the job ended: every batch finished, one failed, or the deadline passed."""
        if self.failed():
            return Verdict.FAILED
        if not self.running():
            return Verdict.SUCCESS
        if deadline is not None and now >= deadline:
            return Verdict.TIMEOUT
        return Verdict.RUNNING


def stopped_waiting(job: JobReference, progress: JobProgress | None) -> str:
    """What a wait stopped by a user says (the sensor's on_kill, the trigger's): the API has no
    cancel endpoint, so the batches go on and are billed; which were still running when last looked."""
    running = progress.running() if progress is not None else []
    where = (f"{len(running)} still running when last looked: {', '.join(running[:20])}"
             f"{' …' if len(running) > 20 else ''}" if running
             else f"its batches are listed in {job.get('manifest', '?')}")
    return (f"Stopped waiting for job {job.get('job_id', '?')}; its batches keep running on the server and are "
            f"billed (the API has no cancel): {where}. A new run of the task waits for them again; nothing is "
            "resubmitted.")


SHOWN_IDS = 10  # failed batch ids a verdict's message and the trigger's event name


def verdict_message(job: JobReference, progress: JobProgress, verdict: Verdict) -> str:
    """What a finished wait says: the trigger logs it and sends it in its event, the sensor and the
    worker-side wait log it or raise it (:func:`verdict_error`)."""
    job_id, counts = job.get("job_id"), progress.counts().describe()
    if verdict is Verdict.SUCCESS:
        return f"job {job_id} finished: {counts}"
    if verdict is Verdict.FAILED:
        return (f"job {job_id}: batches failed ({', '.join(progress.failed()[:SHOWN_IDS])}); their rows will not "
                f"come back. The other batches keep running and are billed. {counts}")
    if verdict is Verdict.TIMEOUT:
        return (f"job {job_id} not finished by its deadline; the batches keep running on the server and a retry "
                f"will wait for them again (nothing is resubmitted). {counts}")
    raise ValueError("a running job has no verdict yet")


def verdict_error(verdict: Verdict, message: str) -> AirflowException:
    """What a wait raises for a job that did not succeed."""
    return (BatchJobFailedError if verdict is Verdict.FAILED else BatchJobTimeoutError)(message)
