"""Waiting on a worker, without a triggerer: the deferrable sensor's short look before it defers, the
poke and reschedule modes, and the submit operator's ``wait_for_completion`` when it does not defer.
It polls with the trigger's engine (job/polling.py) and ends with the verdicts of job/waiting.py."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

from airflow.sdk import conf

from airflow_batch_provider.hooks.batch_api import BatchApiHook
from airflow_batch_provider.job.budget import budget_for
from airflow_batch_provider.job.manifest import JobManifest, JobReference, connection_of
from airflow_batch_provider.job.polling import Poller, WorkerPolling
from airflow_batch_provider.job.retry_by_time import RetryByTime
from airflow_batch_provider.job.waiting import JobProgress, Verdict, verdict_error, verdict_message
from airflow_batch_provider.logs import ProgressLog, TaskLog

INLINE_LOOKS = 3  # status requests the deferrable sensor makes on the worker before it defers


def default_deferrable() -> bool:
    """``[operators] default_deferrable``: a deployment without a triggerer must not defer."""
    return conf.getboolean("operators", "default_deferrable", fallback=False)


def hook_for(job: JobReference) -> BatchApiHook:
    """The sync hook of the job's connection."""
    return BatchApiHook(connection_of(job))


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


def outcome(job: JobReference, progress: JobProgress, verdict: Verdict, log: TaskLog) -> dict[str, Any]:
    """The counts of a finished job, or the error its verdict stands for."""
    message = verdict_message(job, progress, verdict)
    if verdict is not Verdict.SUCCESS:
        raise verdict_error(verdict, message)
    log.info("%s", message)
    return {"status": "success", "job": job, **vars(progress.counts())}


def worker_polling(job: JobReference, progress: JobProgress, *, max_concurrency: int,
                   requests_per_minute: float | None, log: TaskLog) -> WorkerPolling:
    """The wait's polling from a worker: the trigger's choice of batches, budget and concurrency."""
    hook = hook_for(job)
    settings = hook.settings
    budget = budget_for(settings, requests_per_minute, max_concurrency, log)
    poller = Poller(progress, budget, max_concurrency=max_concurrency, retry=RetryByTime.of(settings),
                    job_id=str(job.get("job_id")), log=log)
    return WorkerPolling(poller, hook.batch_api_conn_id)


def wait_on_worker(job: JobReference, manifest: JobManifest, *, poll_interval: float, timeout: timedelta,
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
