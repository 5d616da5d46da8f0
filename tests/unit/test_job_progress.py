"""What a rescheduled poke keeps of a wait for the next one: which batches finished (run-length
encoded by position) and their items summed, taken back so that the counts and the verdict agree."""

from __future__ import annotations

import json

from hypothesis import given, strategies as st

from airflow_batch_provider.job.waiting import JobProgress
from airflow_batch_provider.protocol.status import BatchState, BatchStatus

STATES = st.sampled_from([None, "running", "completed", "failed"])


def status(batch_id: str, state: str, completed: int) -> BatchStatus:
    return BatchStatus(batch_id, BatchState(state), state, 50, completed, 50 - completed, 2)


@given(st.lists(st.tuples(STATES, st.integers(0, 50)), max_size=60),
       st.lists(st.tuples(STATES, st.integers(0, 50)), max_size=60))
def test_what_is_taken_back_counts_as_what_was_seen(seen, later):
    """Kept through JSON (the state store's), then more answers seen by the next poke: the same
    running batches, failed batches and counts as one process that saw everything."""
    ids = [f"batch_{i}" for i in range(len(seen))]
    whole, first = JobProgress(ids), JobProgress(ids)
    for batch_id, (state, completed) in zip(ids, seen, strict=True):
        if state is not None:
            whole.update(status(batch_id, state, completed))
            first.update(status(batch_id, state, completed))
    second = JobProgress(ids)
    second.restore_finished(json.loads(json.dumps(first.finished_state())))
    # The next poke asks about every batch still running (and only those): a new answer, or the
    # same one again (what a running batch had done is not kept, it is asked again).
    answers = iter(later)
    for batch_id in second.running():
        state, completed = next(answers, (None, 0))
        answer = status(batch_id, state, completed) if state is not None else whole._latest.get(batch_id)
        if answer is not None:
            whole.update(answer)
            second.update(answer)
    assert second.running() == whole.running()
    assert second.failed() == whole.failed()
    assert second.counts() == whole.counts()


def test_a_job_finishing_in_order_keeps_a_few_entries_whatever_its_size_and_its_item_failures():
    ids = [f"batch_{i}" for i in range(20_000)]
    progress = JobProgress(ids)
    for index, batch_id in enumerate(ids[:15_000]):
        progress.update(status(batch_id, "completed", 50 - index % 3))  # items failing here and there
    progress.update(status(ids[15_007], "failed", 0))
    kept = progress.finished_state()
    assert kept["runs"] == [[0, 15_000, "completed"], [15_007, 1, "failed"]]
    assert kept["items"] == [15_001 * 50, sum(50 - i % 3 for i in range(15_000)), 15_000 + 50]
    assert len(json.dumps(kept)) < 200
