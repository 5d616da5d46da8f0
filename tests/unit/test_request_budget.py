"""The wait's request budget: starts polite, doubles while it is what keeps finished batches from
being confirmed, falls back while nothing finishes, halves when told to slow down; never below the
start nor above the ceiling."""

from __future__ import annotations

import logging
from itertools import pairwise

import pytest

from airflow_batch_provider.job.budget import RequestBudget

LOG = logging.getLogger("budget")


def quick(budget: RequestBudget, cycles: int = 1, confirmed: int = 50) -> None:
    for _ in range(cycles):
        budget.cycle_done(answered=50, throttled=0, seconds_per_answer=0.05, saturated=True, confirmed=confirmed)


def test_it_doubles_while_finished_batches_wait_and_answers_are_quick():
    budget = RequestBudget(600, None, concurrency=64, log=LOG)
    assert budget.per_cycle(5) == 50
    quick(budget, 7)
    assert budget.rate == 600 * 2 ** 7  # 76,800 a minute: past 60,000 in 7 cycles


def test_it_falls_back_while_nothing_finishes_and_holds_when_it_is_not_what_limits():
    budget = RequestBudget(600, None, concurrency=64, log=LOG)
    quick(budget, 3)
    assert budget.rate == 4800
    quick(budget, 2, confirmed=0)  # every batch asked about is still running: fewer requests
    assert budget.rate == 1200
    quick(budget, 5, confirmed=0)
    assert budget.rate == 600  # never below the start
    budget.cycle_done(answered=3, throttled=0, seconds_per_answer=0.05, saturated=False, confirmed=3)
    assert budget.rate == 600  # all there was to ask about was asked
    quick(budget, confirmed=10)
    assert budget.rate == 600  # most answers said "still running": the rate is not the bottleneck
    quick(budget)
    budget.cycle_done(answered=50, throttled=0, seconds_per_answer=0.5, saturated=True, confirmed=50)
    assert budget.rate == 1200  # ten times slower than usual: the server is straining, hold


def test_the_requests_in_flight_bound_the_cycle_and_a_zero_clock_divides_nothing():
    budget = RequestBudget(600, None, concurrency=8, log=LOG)
    quick(budget, 12)
    assert budget.rate <= 2 * 8 / 0.05 * 60  # 8 in flight answer 160 a second: more rate cannot help
    assert budget.per_cycle(5) <= 8 * 5 / 0.05
    budget.cycle_done(answered=50, throttled=0, seconds_per_answer=0.0, saturated=True, confirmed=50)
    assert budget.per_cycle(5) >= 1


def test_it_halves_when_throttled_then_approaches_carefully(caplog):
    caplog.set_level(logging.INFO)
    budget = RequestBudget(600, 20_000, concurrency=64, log=LOG)
    quick(budget, 6)
    assert budget.rate == 20_000  # the ceiling
    budget.cycle_done(answered=40, throttled=3, seconds_per_answer=0.05, saturated=True, confirmed=40)
    assert budget.rate == 10_000  # the doubling may have overshot twice: halved
    quick(budget)
    assert budget.rate == 10_500  # then 5 % of the rate found a cycle
    budget.cycle_done(answered=40, throttled=1, seconds_per_answer=0.05, saturated=True, confirmed=40)
    assert budget.rate == 10_500 * 0.7  # a later throttle, close to the limit: a smaller cut
    assert "Status requests: 10,000 a minute (the API asked to slow down 3 time(s))" in caplog.messages
    for _ in range(12):  # the same share of 429s, however low the rate: not the rate's doing
        budget.cycle_done(answered=40, throttled=1, seconds_per_answer=0.05, saturated=True, confirmed=40)
    assert budget.noise == pytest.approx(1 / 41)
    assert budget.rate > 10_500  # random 429s cannot starve a job: it grows again
    assert ("Status requests: 2 % of requests are throttled whatever the rate (after a cut as before); taken as "
            "noise: the rate is cut only when more are") in caplog.messages
    assert RequestBudget(600, 100, concurrency=8, log=LOG).rate == 100  # a ceiling below the start wins


def test_a_429_slows_every_request_at_once_and_cuts_the_rate_once_a_burst():
    """Told by the hooks as they retry: no request starts before the Retry-After, and the rate is cut
    while the cycle still runs; the other 429s of the same burst do not cut it again."""
    budget = RequestBudget(600, None, concurrency=8, log=LOG)
    quick(budget, 4)
    budget.slow_down(0.5)
    assert budget.rate == 4800
    assert budget._turn()[0] >= 0.45  # the next request waits for the Retry-After
    budget.slow_down(0.5)
    assert budget.rate == 4800  # the same burst
    budget.cycle_done(answered=40, throttled=2, seconds_per_answer=0.05, saturated=True, confirmed=40)
    assert budget.rate == 4800  # already cut while the cycle ran
    budget.slow_down(0.5)
    assert budget.rate == 4800  # the same burst still, though a new cycle: within Retry-After + 1 s
    budget._lowered_at -= 2  # two seconds later
    budget.slow_down(0.5)
    assert budget.rate == 4800 * 0.7  # a new burst: a later cut takes 30 %


@pytest.mark.parametrize(("start", "concurrency"), [(0, 8), (float("nan"), 8), (600, 0)])
def test_unusable_settings_are_refused(start, concurrency):
    with pytest.raises(ValueError):
        RequestBudget(start, None, concurrency=concurrency, log=LOG)


def test_requests_are_spaced_evenly_at_the_rate_without_a_burst_after_an_idle_spell():
    """Paced request by request, shared by every request in flight: an API that limits by the second
    sees the rate, not a cycle's burst."""
    budget = RequestBudget(6000, None, concurrency=8, log=LOG)  # one request each 10 ms
    waits = [budget._turn()[0] for _ in range(5)]
    assert waits[0] < 0.005
    assert [round(b - a, 3) for a, b in pairwise(waits)] == [0.01] * 4
    quick(budget)  # doubled: each 5 ms
    later = [budget._turn()[0] for _ in range(3)]
    assert round(later[2] - later[1], 3) == 0.005


def test_a_rate_learned_earlier_is_taken_back_within_the_start_and_the_ceiling():
    budget = RequestBudget(600, 20_000, concurrency=8, log=LOG)
    budget.resume(9_600, 4_800)
    assert (budget.rate, budget.found) == (9_600, 4_800)
    budget.resume(1e9, None)
    assert (budget.rate, budget.found) == (20_000, None)
    budget.resume(10, 10)
    assert (budget.rate, budget.found) == (600, 600)


def test_below_the_rate_found_it_doubles_back_up_to_it_and_then_grows_by_5_percent():
    budget = RequestBudget(600, None, concurrency=64, log=LOG)
    quick(budget, 4)  # 9,600
    budget.slow_down(0.0)
    assert budget.found == budget.rate == 4_800
    quick(budget, 3, confirmed=0)  # nothing finishing: back to the start
    assert budget.rate == 600
    quick(budget, 3)
    assert budget.rate == 4_800  # 1,200, 2,400, then the rate found, not 9,600
    quick(budget)
    assert budget.rate == 4_800 * 1.05


def test_an_unpaced_budget_goes_as_fast_as_asked_until_a_429_then_paces_from_half_what_it_sent():
    """A load's downloads: no pacing until the API asks to slow down, then half the rate they were
    starting at (the last second's), and the wait's growth rules from there."""
    budget = RequestBudget(600, None, concurrency=8, log=LOG, unpaced=True)
    assert all(budget._turn()[0] == 0 for _ in range(200))  # 200 in no time: 12,000 a minute
    budget.slow_down(0.0)
    assert budget.rate == 6_000 and budget.found == 6_000
    assert RequestBudget(600, 3_000, concurrency=8, log=LOG, unpaced=True).rate == 3_000  # the ceiling holds


def test_noise_neither_pauses_nor_cuts_but_a_rise_above_it_does():
    budget = RequestBudget(600, None, concurrency=64, log=LOG)
    quick(budget, 4)  # 9,600 a minute
    budget.cycle_done(answered=90, throttled=10, seconds_per_answer=0.05, saturated=True, confirmed=90)
    assert budget.rate == 4800 and budget.noise == 0
    budget.cycle_done(answered=90, throttled=10, seconds_per_answer=0.05, saturated=True, confirmed=90)
    assert budget.noise == pytest.approx(0.1)  # halving the rate left the share where it was
    rate = budget.rate
    budget.slow_down(1.0)
    assert budget._turn()[0] < 0.5 and budget.rate == rate  # no pause for the others, no cut
    budget.cycle_done(answered=90, throttled=12, seconds_per_answer=0.05, saturated=True, confirmed=90)
    assert budget.rate == rate  # within the noise but above its mean: it holds
    budget.cycle_done(answered=92, throttled=8, seconds_per_answer=0.05, saturated=True, confirmed=92)
    assert budget.rate > rate  # below it: it grows as if unthrottled
    rate = budget.rate
    budget.cycle_done(answered=60, throttled=40, seconds_per_answer=0.05, saturated=True, confirmed=60)
    assert budget.rate == rate * 0.7  # 40 %: well above the noise, so the rate's doing


def test_throttles_that_stop_after_a_cut_are_the_rates_doing_not_noise():
    budget = RequestBudget(600, None, concurrency=64, log=LOG)
    quick(budget, 4)
    budget.cycle_done(answered=80, throttled=20, seconds_per_answer=0.05, saturated=True, confirmed=80)
    budget.cycle_done(answered=50, throttled=0, seconds_per_answer=0.05, saturated=True, confirmed=50)
    assert budget.noise == 0
    budget.slow_down(1.0)
    assert budget._turn()[0] >= 0.9  # a 429 still pauses every request at once


def test_noise_fades_as_throttles_stop():
    budget = RequestBudget(600, None, concurrency=64, log=LOG)
    budget.noise = 0.1
    for _ in range(15):
        budget.cycle_done(answered=50, throttled=0, seconds_per_answer=0.05, saturated=True, confirmed=50)
    assert budget.noise == 0


def test_a_limit_far_below_the_rate_is_never_taken_for_noise():
    """Cuts that leave most requests throttled (the rate is many times the limit) are the rate's
    doing, however little each cut helps: the rate keeps falling, and each 429 pauses the others."""
    budget = RequestBudget(600, None, concurrency=64, log=LOG)
    quick(budget, 5)  # 19,200 a minute; the API's limit drops to a tenth of it
    rates = []
    for _ in range(8):
        limit_share = max(0.0, 1 - 1920 / budget.rate)
        throttled = round(100 * limit_share)
        budget.cycle_done(answered=100 - throttled, throttled=throttled, seconds_per_answer=0.05, saturated=True,
                          confirmed=100 - throttled)
        rates.append(budget.rate)
    assert budget.noise == 0
    assert rates[0] == 9600 and rates[-1] < 1920 * 1.05  # down to the limit, not grown past it
    budget.slow_down(1.0)
    assert budget._turn()[0] >= 0.9


def test_noise_is_learned_at_the_start_too_where_a_cut_cannot_lower_the_rate():
    """A wait starts at the connection's requests_per_minute: random 429s there must not pin it."""
    budget = RequestBudget(600, None, concurrency=32, log=LOG)
    for _ in range(2):
        budget.cycle_done(answered=18, throttled=2, seconds_per_answer=0.05, saturated=True, confirmed=18)
    assert budget.noise == pytest.approx(0.1)
    for _ in range(3):
        budget.cycle_done(answered=19, throttled=1, seconds_per_answer=0.05, saturated=True, confirmed=19)
    assert budget.rate > 600
    stuck = RequestBudget(600, None, concurrency=32, log=LOG)  # a limit at half the start: 50 % throttled
    for _ in range(4):
        stuck.cycle_done(answered=10, throttled=10, seconds_per_answer=0.05, saturated=True, confirmed=10)
    assert stuck.noise == 0 and stuck.rate == 600


def test_noise_is_judged_over_as_many_small_cycles_as_it_takes():
    """A wait at its starting rate asks a few batches a cycle: one 429 in five is no verdict."""
    budget = RequestBudget(600, None, concurrency=32, log=LOG)
    for cycle in range(30):  # one 429 in every ten requests, five requests a cycle
        throttled = cycle % 2
        budget.cycle_done(answered=5 - throttled, throttled=throttled, seconds_per_answer=0.05, saturated=True,
                          confirmed=5 - throttled)
    assert 0.05 <= budget.noise <= 0.15


def test_once_noise_is_learned_at_the_start_the_rate_doubles_again():
    """Cuts at the start lowered nothing, so they found no limit: once the noise is learned there,
    the rate doubles, not 5 % a cycle (from 600 a minute under 30 % faults, 5 % steps took minutes to
    reach what 50 ms answers allow). Higher up, a low share may be a limit close by: approached."""
    budget = RequestBudget(600, None, concurrency=32, log=LOG)
    for _ in range(2):
        budget.cycle_done(answered=18, throttled=2, seconds_per_answer=0.05, saturated=True, confirmed=18)
    assert budget.noise == pytest.approx(0.1) and budget.found is None and budget.rate == 1200
    rates = []
    for _ in range(4):
        budget.cycle_done(answered=19, throttled=1, seconds_per_answer=0.05, saturated=True, confirmed=19)
        rates.append(budget.rate)
    assert rates == [2400, 4800, 9600, 19200]
    budget.cycle_done(answered=60, throttled=40, seconds_per_answer=0.05, saturated=True, confirmed=60)
    assert budget.rate == 19200 * 0.7  # a limit met under noise: a 30 % cut
    near = RequestBudget(600, None, concurrency=64, log=LOG)
    quick(near, 4)  # 9,600 a minute
    for _ in range(2):  # a limit about there: a few 429s a cycle, before the cut and after
        near.cycle_done(answered=158, throttled=2, seconds_per_answer=0.05, saturated=True, confirmed=158)
    assert near.noise > 0 and near.found == 4800
    rate = near.rate
    quick(near)
    assert near.rate == pytest.approx(rate * 1.05)  # approached, not doubled past it


def test_noise_seen_a_few_requests_a_cycle_is_kept_not_faded_into_cuts():
    """Nine requests a cycle, 9 % of them throttled at random: most cycles see no throttle, which is
    chance, not the noise ending. Fading on each of them let the estimate fall to nothing, and the
    next throttle cut the rate and paused every request: a submit under 30 % faults sank to its
    starting rate. Followed over every 50 requests, the noise stays, and the rate grows."""
    import random

    chance = random.Random(9)
    budget = RequestBudget(600, None, concurrency=8, log=LOG)
    for _ in range(300):
        throttled = sum(chance.random() < 0.09 for _ in range(9))
        budget.cycle_done(answered=9 - throttled, throttled=throttled, seconds_per_answer=0.05, saturated=True,
                          confirmed=9 - throttled)
    assert 0.04 <= budget.noise <= 0.15
    assert budget.rate >= 8 * 60 / 0.05 / 2  # at least half what 8 requests in flight answer at 50 ms
    learned, rate = budget._learned, budget.rate  # the noise a cut showed: the most it may be
    for _ in range(20):  # then a limit: 6 of 9 throttled, a cycle too small to cut but not to hold
        budget.cycle_done(answered=3, throttled=6, seconds_per_answer=0.05, saturated=True, confirmed=3)
    assert budget.rate <= rate and budget.noise <= learned  # held, and the limit's 429s are not noise
    for _ in range(3):  # in cycles big enough to judge, well above the noise: cut
        budget.cycle_done(answered=10, throttled=10, seconds_per_answer=0.05, saturated=True, confirmed=10)
    assert budget.rate < rate and budget.noise <= learned


def test_throttles_the_rate_causes_within_twice_the_noise_do_not_raise_it():
    """Followed over windows, the estimate only comes down from what a cut showed: 429s of a limit
    just above the noise would otherwise raise it step by step until the limit passed for noise."""
    budget = RequestBudget(600, None, concurrency=32, log=LOG)
    for _ in range(2):
        budget.cycle_done(answered=18, throttled=2, seconds_per_answer=0.05, saturated=True, confirmed=18)
    learned = budget.noise
    for _ in range(50):  # 18 %: under twice the noise plus five points, so not cut; but held
        budget.cycle_done(answered=82, throttled=18, seconds_per_answer=0.05, saturated=True, confirmed=82)
    assert budget.noise <= learned
