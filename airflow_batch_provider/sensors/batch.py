"""``BatchSensor``: waits for a submitted job.

Whether it defers follows ``[operators] default_deferrable`` (False in a default Airflow), unless
``deferrable`` is given. Deferrable: it checks once on the worker (a finished job completes inline),
then defers to :class:`~airflow_batch_provider.triggers.batch.BatchTrigger` with an absolute
deadline, holding no worker slot. Poke and reschedule modes poll from the worker with the trigger's
engine (job/polling.py: the same choice of batches, concurrency and request budget) and the same
:class:`~airflow_batch_provider.job.waiting.JobProgress` decision; reschedule mode keeps what it
learned between pokes in the task's state store. Item-level failures never fail the sensor: it
returns the counts, and the loader decides with ``max_failed_ratio``.
"""
from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any, cast

from airflow.exceptions import AirflowProviderDeprecationWarning
from airflow.sdk import BaseSensorOperator, PokeReturnValue

from airflow_batch_provider.hooks.errors import BatchApiError
from airflow_batch_provider.hooks.retry import is_retryable
from airflow_batch_provider.job.manifest import JobReference, job_reference, read_manifest
from airflow_batch_provider.job.polling import Poller, WorkerPolling

# What the sensor raises (itself, or through check_event), importable from its module.
from airflow_batch_provider.job.waiting import (
    BatchJobFailedError,
    BatchJobTimeoutError,
    BatchPollingError,
    JobProgress,
    Verdict,
    stopped_waiting,
)
from airflow_batch_provider.job.worker_wait import (
    INLINE_LOOKS as INLINE_LOOKS,
    default_deferrable,
    hook_for,
    look,
    outcome,
    worker_polling,
)
from airflow_batch_provider.logs import ProgressLog
from airflow_batch_provider.triggers.batch import check_event, defer_until_done

if TYPE_CHECKING:
    from airflow.sdk import Context

WAIT_KEY = "wait"  # in a rescheduled sensor's task_state_store: what its last poke learned

__all__ = ["BatchJobFailedError", "BatchJobTimeoutError", "BatchPollingError", "BatchSensor"]


class BatchSensor(BaseSensorOperator):
    """Wait until every batch of a job has finished.

    :param job: the submit operator's output (its XCom job reference).
    :param deferrable: wait on the triggerer instead of a worker slot; default ``[operators]
        default_deferrable``, as Airflow's own sensors (set it True where a triggerer runs).
    :param poll_interval: seconds between status polls (default 5, as the API docs advise);
        ``poke_interval``, the argument every sensor takes, may be given instead.
    :param max_poll_interval: the longest interval while nothing changes (deferrable mode).
    :param max_concurrency: status requests in flight at most (the rate decides how many are needed).
    :param requests_per_minute: the most status requests a minute; default: the
        connection's ``max_requests_per_minute``. The rate starts at the connection's
        ``requests_per_minute`` and grows while the API keeps up.
    :param max_consecutive_failures: deprecated and ignored: a batch whose status cannot be read is
        asked about again, and the wait gives up once it has failed, or nothing has been answered,
        for the connection's ``retry_total_timeout``.
    :param timeout: longest wait (seconds or timedelta), from when the sensor starts waiting; the
        deadline is fixed then and survives triggerer restarts.

    Returns (XCom) the counts: batches and items completed / failed / total.
    """

    template_fields: Sequence[str] = ("job",)
    ui_color = "#fff3e0"

    def __init__(self, *, job: Any, deferrable: bool | None = None, poll_interval: float | None = None,
                 poke_interval: float | timedelta | None = None,  # every sensor's argument: the same thing
                 max_poll_interval: float = 60.0, max_concurrency: int = 32, requests_per_minute: float | None = None,
                 max_consecutive_failures: int | None = None, timeout: float | timedelta = timedelta(hours=24),
                 **kwargs: Any) -> None:
        if poll_interval is not None and poke_interval is not None:
            raise ValueError("give poll_interval or poke_interval, not both")
        if poll_interval is None:
            poll_interval = 5.0 if poke_interval is None else (
                poke_interval.total_seconds() if isinstance(poke_interval, timedelta) else float(poke_interval))
        seconds = timeout.total_seconds() if isinstance(timeout, timedelta) else float(timeout)
        super().__init__(timeout=seconds, poke_interval=poll_interval, **kwargs)
        self.job = job
        self.deferrable = default_deferrable() if deferrable is None else deferrable
        self.poll_interval = poll_interval
        self.max_poll_interval = max_poll_interval
        self.max_concurrency = max_concurrency
        self.requests_per_minute = requests_per_minute
        if max_consecutive_failures is not None:
            warnings.warn("BatchSensor(max_consecutive_failures=...) is ignored: a wait now gives up by time, after "
                          "the connection's retry_total_timeout", AirflowProviderDeprecationWarning, stacklevel=2)
        self._progress: JobProgress | None = None
        self._progress_log: ProgressLog | None = None
        self._polling: WorkerPolling | None = None  # poke mode keeps it (and what it learned) between pokes

    def _job_progress(self) -> JobProgress:
        if self._progress is None:
            self._progress = JobProgress.of(read_manifest(self.job)[0])
        return self._progress

    def _check_inline(self) -> Verdict:
        progress = self._job_progress()
        try:
            look(progress, hook_for(self.job))
        except BatchApiError as exc:
            if not is_retryable(exc, idempotent=True):  # the hooks' one rule: it fails alike on the triggerer
                raise
            self.log.warning("A status request before deferring failed (%s); the trigger asks again", exc)
        return progress.verdict(time.time(), None)

    def _worker_polling(self) -> WorkerPolling:
        if self._polling is None:
            self._polling = worker_polling(self.job, self._job_progress(), max_concurrency=self.max_concurrency,
                                           requests_per_minute=self.requests_per_minute, log=self.log)
        return self._polling

    def _result(self, verdict: Verdict) -> dict[str, Any]:
        return outcome(self.job, self._job_progress(), verdict, self.log)

    def execute(self, context: Context) -> Any:
        """Deferrable: a short look on the worker, then defer to the trigger unless the job has finished;
        otherwise poke (or reschedule) as Airflow's sensors do."""
        self.job = job_reference(self.job)  # a template may have rendered it into a string
        if not self.deferrable:
            return super().execute(context)
        verdict = self._check_inline()
        if verdict is not Verdict.RUNNING:
            return self._result(verdict)
        self.log.info("Job %s: %s; deferring", self.job.get("job_id"), self._job_progress().counts().describe())
        defer_until_done(self, self.job, poll_interval=self.poll_interval,
                         timeout=timedelta(seconds=self.timeout), method_name="execute_complete",
                         end_with="counts", max_poll_interval=self.max_poll_interval,
                         max_concurrency=self.max_concurrency, requests_per_minute=self.requests_per_minute)

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        """The trigger's event: the counts, or the error it stands for."""
        return check_event(event)

    def on_kill(self) -> None:
        """Say what a stop leaves running: the API cannot cancel a batch."""
        # Poke and reschedule modes; a deferred wait is stopped on the triggerer (BatchTrigger.on_kill).
        self._close_polling()
        job = cast(JobReference, self.job if isinstance(self.job, dict) else {})  # a template not rendered yet
        self.log.warning(stopped_waiting(job, self._progress))

    def _close_polling(self) -> None:
        if self._polling is not None:
            self._polling.close()
            self._polling = None

    def poke(self, context: Context) -> PokeReturnValue:
        """The wait's polling (job/polling.py, as on the triggerer): the batches chosen within the
        request budget, ``max_concurrency`` at a time; cycles follow at once while they confirm a
        backlog of finished batches, so one poke confirms a finished job at the budget's pace."""
        self.job = job_reference(self.job)
        polling = self._worker_polling()
        # Reschedule mode starts each poke in a new process: it takes back what the last poke learned
        # (which batches finished, the rate) from the task's state store. Without a store it asks
        # about every batch still running, as a budgeted choice could miss some for ever.
        store = context.get("task_state_store") if self.reschedule else None
        if store is not None and polling.poller.cycles == 0:
            self._take_back(store, polling.poller)
        progress = self._job_progress()
        try:
            while True:
                _, stop = polling.cycle(self.poll_interval, sweep=self.reschedule and store is None)
                verdict = progress.verdict(time.time(), None)
                self._log_progress(progress)
                if stop is not None or verdict is not Verdict.RUNNING or not polling.poller.backlog:
                    break
            if store is not None and verdict is Verdict.RUNNING:  # a retry after a stop goes on from here too
                self._keep(store, polling.poller)
        except BaseException:
            self._close_polling()
            raise
        if stop is not None or verdict is not Verdict.RUNNING or self.reschedule:
            self._close_polling()
        if stop is not None:
            raise stop.error()
        if verdict is Verdict.RUNNING:
            return PokeReturnValue(is_done=False)
        return PokeReturnValue(is_done=True, xcom_value=self._result(verdict))

    def _log_progress(self, progress: JobProgress) -> None:
        if self._progress_log is None:  # poke mode keeps it between pokes: the rate is the wait's
            self._progress_log = ProgressLog(self.log, f"Job {self.job.get('job_id')}: finished", "batches",
                                             len(progress.batch_ids), every=0)
        seen = progress.counts()
        self._progress_log.update(seen.batches_done, seen.describe())

    def _keep(self, store: Any, poller: Poller) -> None:
        """What a rescheduled poke learned, for the next: the finished batches, the rate, the cycle."""
        store.set(WAIT_KEY, {"job_id": self.job.get("job_id"), "finished": poller.progress.finished_state(),
                             "cycles": poller.cycles, "rate": poller.budget.rate, "found": poller.budget.found})

    def _take_back(self, store: Any, poller: Poller) -> None:
        kept = store.get(WAIT_KEY)
        if not kept or kept.get("job_id") != self.job.get("job_id"):
            return  # first poke, or a new job from a rerun submit
        poller.progress.restore_finished(kept["finished"])
        poller.cycles = kept["cycles"]
        poller.budget.resume(kept["rate"], kept.get("found"))
