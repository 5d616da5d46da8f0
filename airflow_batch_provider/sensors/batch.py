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
from typing import TYPE_CHECKING, Any

from airflow.exceptions import AirflowProviderDeprecationWarning
from airflow.sdk import BaseSensorOperator, PokeReturnValue, conf

from airflow_batch_provider.hooks.batch_api import BatchApiHook
from airflow_batch_provider.hooks.errors import BatchApiError
from airflow_batch_provider.hooks.retry import is_retryable
from airflow_batch_provider.job.budget import budget_for
from airflow_batch_provider.job.manifest import JobManifest, job_reference, read_manifest
from airflow_batch_provider.job.polling import Poller, WorkerPolling
from airflow_batch_provider.job.retry_by_time import RetryByTime

# What the sensor raises (itself, or through check_event), importable from its module.
from airflow_batch_provider.job.waiting import (
    BatchJobFailedError,
    BatchJobTimeoutError,
    BatchPollingError,
    JobProgress,
    Verdict,
    stopped_waiting,
    verdict_error,
    verdict_message,
)
from airflow_batch_provider.logs import ProgressLog, TaskLog
from airflow_batch_provider.triggers.batch import check_event, defer_until_done

if TYPE_CHECKING:
    from airflow.sdk import Context

INLINE_LOOKS = 3  # status requests the deferrable sensor makes on the worker before it defers
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
            look(progress, _hook_for(self.job))
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
        return check_event(event)

    def on_kill(self) -> None:
        # Poke and reschedule modes; a deferred wait is stopped on the triggerer (BatchTrigger.on_kill).
        self._close_polling()
        job = self.job if isinstance(self.job, dict) else {}
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


def default_deferrable() -> bool:
    """``[operators] default_deferrable``: a deployment without a triggerer must not defer."""
    return conf.getboolean("operators", "default_deferrable", fallback=False)


def _hook_for(job: dict[str, Any]) -> BatchApiHook:
    return BatchApiHook(job.get("conn_id", BatchApiHook.default_conn_name))


def look(progress: JobProgress, hook: BatchApiHook) -> None:
    """A short look before deferring, newest batch first, that must not hold the worker slot: it
    ends at the first batch still running (batches finish roughly in order, so an unfinished newest
    batch means there is nothing to do yet), and after :data:`INLINE_LOOKS` requests in any case;
    the trigger confirms the rest on the triggerer."""
    for looked, batch_id in enumerate(reversed(progress.running())):
        if looked == INLINE_LOOKS:
            break
        status = hook.get_batch(batch_id)
        progress.update(status)
        if not status.terminal:
            break


def outcome(job: dict[str, Any], progress: JobProgress, verdict: Verdict, log: TaskLog) -> dict[str, Any]:
    """The counts of a finished job, or the error its verdict stands for."""
    message = verdict_message(job, progress, verdict)
    if verdict is not Verdict.SUCCESS:
        raise verdict_error(verdict, message)
    log.info("%s", message)
    return {"status": "success", "job": job, **vars(progress.counts())}


def worker_polling(job: dict[str, Any], progress: JobProgress, *, max_concurrency: int,
                   requests_per_minute: float | None, log: TaskLog) -> WorkerPolling:
    """The wait's polling from a worker: the trigger's choice of batches, budget and concurrency."""
    conn_id = job.get("conn_id", BatchApiHook.default_conn_name)
    settings = BatchApiHook(conn_id).settings
    budget = budget_for(settings, requests_per_minute, max_concurrency, log)
    poller = Poller(progress, budget, max_concurrency=max_concurrency, retry=RetryByTime.of(settings),
                    job_id=str(job.get("job_id")), log=log)
    return WorkerPolling(poller, conn_id)


def wait_on_worker(job: dict[str, Any], manifest: JobManifest, *, poll_interval: float, timeout: timedelta,
                   log: TaskLog, max_poll_interval: float = 60.0, max_concurrency: int = 32,
                   requests_per_minute: float | None = None) -> dict[str, Any]:
    """Poll from this worker until every batch has finished: waiting without a triggerer, as the
    trigger waits (job/polling.py), the interval growing while nothing changes."""
    progress = JobProgress.of(manifest)
    deadline = time.time() + timeout.total_seconds()
    progress_log = ProgressLog(log, f"Job {job.get('job_id')}: finished", "batches", len(progress.batch_ids))
    interval = poll_interval
    with worker_polling(job, progress, max_concurrency=max_concurrency, requests_per_minute=requests_per_minute,
                        log=log) as polling:
        while True:
            changed, stop = polling.cycle(interval)
            if stop is not None:
                raise stop.error()
            verdict = progress.verdict(time.time(), deadline)
            if verdict is not Verdict.RUNNING:
                return outcome(job, progress, verdict, log)
            seen = progress.counts()
            progress_log.update(seen.batches_done, seen.describe())
            interval = poll_interval if changed else min(interval * 1.5, max(max_poll_interval, poll_interval))
            time.sleep(max(0.0, min(polling.poller.pause(interval), deadline - time.time())))
