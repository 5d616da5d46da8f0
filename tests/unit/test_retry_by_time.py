"""RetryByTime: a batch is tried again by time, not by count, on a clock the test moves."""

from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from airflow_batch_provider.hooks.errors import BatchApiRateLimitedError, BatchApiUpstreamError
from airflow_batch_provider.job.retry_by_time import GaveUp, RetryByTime

FAILED = BatchApiUpstreamError("bad gateway", status_code=502)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def retry(clock: Clock, budget: float = 60.0) -> RetryByTime:
    return RetryByTime(budget, initial_wait=1.0, max_wait=8.0, clock=clock)


def test_a_batch_is_tried_again_for_as_long_as_the_budget_however_many_times_it_fails():
    clock = Clock()
    tries = retry(clock)
    for _ in range(300):  # far more failures than any count of attempts would allow
        clock.now += 0.2
        tries.succeeded("other")  # the job goes on
        assert 0.0 <= tries.failed("a", FAILED) <= 8.0
    clock.now += 1.2
    tries.succeeded("other")
    with pytest.raises(GaveUp, match=r"it has failed for 61 s \(301 tries\), longer "
                                     r"than retry_total_timeout=60 s; the last error: HTTP 502"):
        tries.failed("a", FAILED)


def test_a_success_starts_the_batch_clock_again():
    clock = Clock()
    tries = retry(clock)
    tries.failed("a", FAILED)
    clock.now += 50
    tries.succeeded("a")
    clock.now += 50
    tries.failed("a", FAILED)  # failing for 0 s, not 100 s
    assert tries.failing == 1


def test_the_clock_of_a_batch_starts_when_its_failing_call_began():
    clock = Clock()
    tries = retry(clock)
    clock.now += 59  # the hook retried that one call for 59 s
    tries.succeeded("other")
    clock.now += 1
    with pytest.raises(GaveUp, match="it has failed for 60 s"):
        tries.failed("a", FAILED, started=clock.now - 60)


def test_nothing_succeeding_for_the_budget_gives_up_whatever_failed():
    clock = Clock()
    tries = retry(clock)
    for key in range(5):
        clock.now += 11
        tries.failed(key, FAILED)  # the first at 1011: the API is down from then
    clock.now += 16
    with pytest.raises(GaveUp, match="no request of the job has succeeded for 60 s, .* the API or the way to it is down"):
        tries.failed("new", FAILED)


def test_an_idle_spell_between_successes_is_not_an_outage():
    """A wait polls every few minutes: the time since its last answer is not time without one."""
    clock = Clock()
    tries = retry(clock)
    tries.succeeded("a")
    clock.now += 900  # the next cycle, 15 minutes later
    tries.failed("a", FAILED)
    clock.now += 30
    assert tries.failed("a", FAILED) >= 0  # failing for 30 s: tried again


def test_a_batch_not_tried_for_long_starts_a_new_streak():
    clock = Clock()
    tries = retry(clock)
    tries.failed("seldom", FAILED)
    for _ in range(10):  # the job goes on; this batch is not asked about for a while
        clock.now += 10
        tries.succeeded("other")
    assert tries.failed("seldom", FAILED) >= 0  # 100 s after its one failure, more than 2 x max_wait


def test_a_retry_after_is_waited_as_asked_up_to_max_wait():
    clock = Clock()
    tries = retry(clock)
    assert tries.failed("a", BatchApiRateLimitedError("slow down", status_code=429, retry_after=3)) == 3
    assert tries.failed("b", BatchApiRateLimitedError("slow down", status_code=429, retry_after=300)) == 8


@given(st.lists(st.sampled_from("abc"), min_size=1, max_size=60))
def test_waits_grow_with_the_batch_own_failures_in_an_outage_and_stay_within_bounds(keys):
    clock = Clock()
    tries = retry(clock, budget=1e9)
    count: dict[str, int] = {}
    for key in keys:
        count[key] = count.get(key, 0) + 1
        wait = tries.failed(key, FAILED)
        assert 0.0 <= wait <= min(8.0, 2 ** (count[key] - 1))
    assert tries.failing == len(count) and tries.retried == len(keys)


def test_while_other_requests_succeed_a_batch_failing_by_chance_is_tried_again_soon():
    """Under random faults one batch fails several times in a row now and then: while the job's
    other requests succeed, its wait stays at the first one's, not the longest."""
    clock = Clock()
    tries = retry(clock, budget=1e9)
    for _ in range(6):
        tries.succeeded("other")
        assert 0.0 <= tries.failed("unlucky", FAILED) <= 1.0
    waits = [tries.failed("unlucky", FAILED) for _ in range(200)]  # nothing succeeds any more: an outage
    assert max(waits) > 4.0
    stubborn = retry(clock, budget=1e9)
    waits = []
    for _ in range(100):  # the others succeed, this one always fails: past the quick tries it backs off
        stubborn.succeeded("other")
        waits.append(stubborn.failed("refused", FAILED))
    assert max(waits[:8]) <= 1.0 and max(waits[8:]) > 4.0
