"""How many status requests a wait may make: a rate that finds the API's limit instead of guessing it.

It starts at a polite rate (the connection's ``requests_per_minute``, 600) and, after each cycle in
which it was what kept finished batches from being confirmed (most answers newly said "finished",
none was throttled, and they came back about as quickly as usual), doubles; while nothing new
finishes it falls back towards the start. A throttle (a 429, or any answer with ``Retry-After``)
cuts it at once: the first cut halves it (the doubling may have overshot the limit twice), later
ones take 30 %; never below the start (so random faults cannot starve a job), never above the
ceiling (the connection's ``max_requests_per_minute``, or the wait's ``requests_per_minute``). Below
the rate found at the last cut it may double again up to that rate; above it, it grows by 5 % a
cycle (as TCP finds a link's capacity: a quick search, then a careful approach).

The rate is kept request by request, not cycle by cycle: :meth:`RequestBudget.wait_turn` spaces the
starts of the requests ``60 / rate`` seconds apart, shared by every request of the wait (threads on
a worker, tasks on the triggerer), so no burst overruns an API that limits by the second; a
throttle pauses every start for its ``Retry-After`` (:meth:`RequestBudget.slow_down`).

Throttles the rate does not cause are told apart from those it does: when the share of throttled
requests does not fall after a cut (a flaky proxy or network answering 429 or 503 with
``Retry-After`` whatever the rate), that share is taken as noise. From then on a throttle neither
pauses the others nor cuts the rate at once (its own request still waits as asked); a cycle cuts the
rate (by 30 %) only when its throttled share rises well above the noise, holds it when a cycle sees
more throttles than the noise accounts for, and otherwise grows as if unthrottled (doubling again
when the noise was learned at the start, where the cuts lowered nothing and so found no limit).
The noise estimate follows the share seen over every fifty requests within it down (never above
what a cut showed), so it fades once fewer throttles come.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections import deque

from airflow_batch_provider.hooks.settings import ApiSettings
from airflow_batch_provider.logs import TaskLog

GROWTH = 2.0
# Above the rate found at the last cut, the rate grows by this share a cycle (from a first cut about
# fifteen cycles back to the rate refused, from a later one about seven), and a later throttle cuts
# it to LATER_CUT: a cycle is a second while a backlog is confirmed, so a coarser step would meet the
# limit every few seconds, each time with a burst of 429s.
CAREFUL_STEP = 0.05
LATER_CUT = 0.7
# A cycle whose answers took longer than this many times the usual is a server slowing down: the
# rate holds instead of growing.
SLOW = 2.0
FASTEST_ANSWER = 0.001  # seconds: a clock that reads 0 must not divide the budget by zero
# A cycle's throttled share is the rate's doing when it is above NOISE_FACTOR x the noise + NOISE_MARGIN
# (at 9 % noise, 23 %: a cycle of a hundred requests strays about 3 % from the noise by chance).
NOISE_FACTOR, NOISE_MARGIN = 2.0, 0.05
# A share above MOST_NOISE is never taken for noise, and the estimate never exceeds it: after a cut
# of 30 % or more, a rate at most 1 / (1 - 0.25) times a real limit is back under it, so a limit's
# throttles fall to nothing and cannot be learned as noise; a rate far above a limit throttles more.
MOST_NOISE = 0.25
# At the start a cut cannot lower the rate, so it cannot show the throttles are not the rate's doing:
# a share this low is still taken for noise there (a limit that close below the start would at worst
# be met at about the start with that share of 429s, and a cycle above twice the share cuts again).
MOST_NOISE_AT_THE_START = 0.15
FEWEST_TO_JUDGE = 10  # requests a cycle needs before its throttled share says anything
NOISE_WINDOW = 50  # requests within the noise over which its estimate follows what they saw


class RequestBudget:
    """:param start: requests a minute to begin with; :param ceiling: never more (None: no ceiling
    but the API's answers); :param concurrency: requests in flight at once, which bounds what a
    cycle can ask for in its interval."""

    def __init__(self, start: float, ceiling: float | None, concurrency: int, log: TaskLog,
                 what: str = "Status requests", *, unpaced: bool = False) -> None:
        if not (math.isfinite(start) and start > 0) or concurrency < 1:
            raise ValueError(f"the starting rate must be a number > 0 and concurrency >= 1, got {start}, {concurrency}")
        self.start = start if ceiling is None else min(start, ceiling)
        self.ceiling = ceiling
        self.concurrency = concurrency
        # unpaced: as fast as the requests in flight allow (a load's downloads), under the ceiling,
        # until the API first asks to slow down; then paced from half the rate it was answering.
        self.rate = (ceiling or math.inf) if unpaced else self.start
        self._started: deque[float] = deque()  # when the requests of the last second started
        self.log = log
        self.what = what  # what the log lines call these requests
        self._usual: float | None = None  # seconds per answer, a moving average of the cycles so far
        self.found: float | None = None  # the rate after the last cut: doubled up to, approached above
        self._lock = threading.Lock()  # the worker's polling threads share the pace
        self._next_start = 0.0  # time.monotonic() before which no further request may start
        self._slowdowns = 0  # times the API asked to slow down: turns given before are given up
        self._lowered_at: float | None = None  # time.monotonic() of the last cut for a throttle
        self._told_in_cycle = False  # slow_down was called during the cycle under way
        self.throttles = 0  # times the API asked to slow down, whether or not it was obeyed at once
        self.noise = 0.0  # share of requests throttled whatever the rate (see the module docstring)
        self._cut_share: float | None = None  # the throttled share of the last cycles before a cut
        self._after_cut = (0, 0)  # requests and throttles since that cut, until there are enough to judge
        self._recent = (0.0, 0.0)  # requests and throttles of the last few cycles, each cycle half the last
        self._above_noise = False  # the last cycle's throttled share was above the noise: hold the rate
        self._within_noise = (0, 0)  # requests and throttles since the noise estimate last followed them
        self._learned = 0.0  # the noise as the last cut showed it: following it only lowers it
        self._stopped = threading.Event()  # the wait is over: no turn is waited for
        self._answers: list[float] = []  # round trips answered since the last cycle (answered / each_second)
        self._second = (time.monotonic(), 0)  # the last each_second cycle: when, and the throttles then

    def resume(self, rate: float, found: float | None) -> None:
        """Go on as a rescheduled poke's budget left off: its rate, and the rate its last cut found,
        within the start and the ceiling."""
        self.rate = self._within(rate)
        self.found = None if found is None else self._within(found)

    def _within(self, rate: float) -> float:
        return max(self.start, rate if self.ceiling is None else min(self.ceiling, rate))

    def stop(self) -> None:
        """The wait is over (done, failed, or killed): turns being waited for end at once."""
        self._stopped.set()

    def _turn(self) -> tuple[float, int]:
        """The next request's turn: the seconds to wait before sending it (starts ``60 / rate``
        apart; an idle spell earns no burst), and the count of slow-downs it was given under."""
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next_start)
            self._next_start = start + 60 / self.rate
            if not math.isfinite(self.rate):  # unpaced: what it sends is what a first cut starts from
                self._started.append(start)
                while self._started[0] < start - 1:
                    self._started.popleft()
            return start - now, self._slowdowns

    def wait_turn(self) -> bool:
        """Block until this request may start (a worker's polling threads); False if the wait was
        stopped meanwhile (:meth:`stop`), and the request must not be sent. A turn given before the
        API asked to slow down is given up for a new one, after the pause and at the lowered rate:
        otherwise the requests already waiting for their turns would meet the same 429."""
        while True:
            delay, slowdowns = self._turn()
            if self._stopped.wait(delay):
                return False
            if slowdowns == self._slowdowns:
                return True

    async def await_turn(self) -> None:
        """:meth:`wait_turn` for the trigger's tasks."""
        while True:
            delay, slowdowns = self._turn()
            await asyncio.sleep(delay)
            if slowdowns == self._slowdowns:
                return

    def slow_down(self, seconds: float) -> None:
        """The API asked a request to slow down (the hooks call this for every throttled answer,
        with the ``seconds`` it asked for): no request starts before then, and the rate is lowered
        at once, not at the end of the cycle. The other answers of the same burst say the same
        thing, so it is lowered again only once ``seconds`` and one more have passed, whatever the
        cycles."""
        with self._lock:
            self.throttles += 1
            if self.noise:  # maybe noise: its request waits as asked, and the cycle's share decides
                return
            now = time.monotonic()
            self._next_start = now + seconds  # every turn given before is given up (wait_turn)
            self._slowdowns += 1
            self._told_in_cycle = True
            if self._lowered_at is None or now - self._lowered_at > seconds + 1:
                self._lowered_at = now
                self._lower(1)

    def _lower(self, throttled: int) -> None:
        # The first throttle ends the doubling, which may have overshot the limit up to twice: halve.
        current = self.rate if math.isfinite(self.rate) else len(self._started) * 60.0  # what it was sending
        # The first throttle halves; under noise that halving went to the cuts that taught the noise.
        first = self.found is None and not self.noise
        lowered = max(self.start, current / GROWTH if first else current * LATER_CUT)
        self.found = lowered
        if lowered < self.rate:
            self.log.info("%s: %s a minute (the API asked to slow down %d time(s))", self.what,
                          f"{lowered:,.0f}", throttled)
        self.rate = lowered

    def _throttled_by_the_rate(self, answered: int, throttled: int) -> bool:
        """Whether this cycle's throttles call for a lower rate. On the way it learns the noise: when
        the throttled share of the requests after a cut (FEWEST_TO_JUDGE of them at least, over as
        many cycles as that takes) is at least half the share before it, and no more than
        MOST_NOISE, the cut did not help. A cycle within the noise but above it holds the rate."""
        asked = answered + throttled
        share = throttled / asked if asked else 0.0
        self._recent = (0.5 * self._recent[0] + asked, 0.5 * self._recent[1] + throttled)  # the last few cycles
        if self._cut_share is not None:
            self._after_cut = (self._after_cut[0] + asked, self._after_cut[1] + throttled)
            if self._after_cut[0] >= FEWEST_TO_JUDGE:
                after = self._after_cut[1] / self._after_cut[0]
                most = MOST_NOISE if self.rate > self.start else MOST_NOISE_AT_THE_START  # the cut lowered it, or not
                if self._cut_share / 2 <= after <= most:
                    if not self.noise:
                        self.log.info("%s: %.0f %% of requests are throttled whatever the rate (after a cut as "
                                      "before); taken as noise: the rate is cut only when more are", self.what,
                                      100 * after)
                        if self.found is not None and self.found <= self.start:
                            # Cuts at the start lowered nothing, so they found no limit: double again.
                            # (Higher up, a share this low may be a limit close by: approach it.)
                            self.found = None
                    self.noise = min(most, after if not self.noise else 0.7 * self.noise + 0.3 * after)
                    self._learned, self._within_noise = self.noise, (0, 0)  # the most it may be, until a cut says more
                self._cut_share = None
        within = not self.noise or asked < FEWEST_TO_JUDGE or share <= NOISE_FACTOR * self.noise + NOISE_MARGIN
        if self.noise and within:
            self._follow_noise(asked, throttled)
        # More throttles than the noise accounts for, by half a request at least (one 429 in nine
        # against a 9 % noise is chance, not more): hold the rate.
        self._above_noise = throttled > self.noise * asked + 0.5
        if not throttled:
            return False
        if self.noise and within:
            self._told_in_cycle = False
            return False
        if self._cut_share is None:  # judged once enough requests have followed
            self._cut_share, self._after_cut = self._recent[1] / self._recent[0], (0, 0)
        return True

    def _follow_noise(self, asked: int, throttled: int) -> None:
        """Follow the noise down over every NOISE_WINDOW requests within it, not cycle by cycle: at a few
        requests a cycle, most cycles see no throttle by chance, and fading on each of them let the
        estimate fall to nothing, after which the next throttle cut the rate and paused every request
        (a submit under 30 % faults sank to its starting rate)."""
        self._within_noise = (self._within_noise[0] + asked, self._within_noise[1] + throttled)
        if self._within_noise[0] < NOISE_WINDOW:
            return
        seen = self._within_noise[1] / self._within_noise[0]
        # Only down from what a cut showed: throttles the rate causes within twice the noise would
        # otherwise raise it, step by step, until a limit passed for noise.
        self.noise = min(self._learned, 0.7 * self.noise + 0.3 * seen)
        if self.noise < 0.01:  # the throttles have stopped
            self.noise = 0.0
        self._within_noise = (0, 0)

    def answered(self, seconds: float) -> None:
        """One request answered after ``seconds`` (from the threads of a submit or a load: list.append
        is safe there), for :meth:`each_second`."""
        self._answers.append(seconds)

    def each_second(self) -> None:
        """For requests that do not come in cycles (a submit's calls, a load's downloads): once a
        second has passed since the last, that second's answers and throttles are a cycle."""
        at, throttles = self._second
        if time.monotonic() - at < 1:
            return
        trips, self._answers = self._answers, []
        told = self.throttles  # read once: a slow_down between two reads would be lost
        self.cycle_done(len(trips), told - throttles, sum(trips) / len(trips) if trips else None,
                        saturated=True, confirmed=len(trips))
        self._second = (time.monotonic(), told)

    def per_cycle(self, interval: float) -> int:
        """Requests a cycle ``interval`` seconds long may make (at least one): what the rate allows,
        and no more than ``concurrency`` requests in flight can answer within the interval."""
        allowed = self.rate * interval / 60
        if self._usual:
            allowed = min(allowed, self.concurrency * interval / self._usual)
        return max(1, int(allowed))

    def cycle_done(self, answered: int, throttled: int, seconds_per_answer: float | None, *,
                   saturated: bool, confirmed: int) -> None:
        """Adapt to one cycle: ``answered`` requests came back, ``confirmed`` of them newly saying a
        batch had finished; ``throttled`` times the API said to slow down; answers took
        ``seconds_per_answer`` on average; ``saturated``: the cycle asked for all the rate allowed
        and more batches were waiting. The rate grows only while it is what keeps finished batches
        from being confirmed; while nothing finishes it falls back towards the start."""
        if self._throttled_by_the_rate(answered, throttled):
            with self._lock:
                if not self._told_in_cycle:  # a hook without slow_down (or noise was assumed): cut now
                    self._lower(throttled)
                self._told_in_cycle = False
            return
        if not answered or seconds_per_answer is None:
            return
        round_trip = max(seconds_per_answer, FASTEST_ANSWER)
        slow = self._usual is not None and round_trip > SLOW * self._usual
        self._usual = round_trip if self._usual is None else 0.8 * self._usual + 0.2 * round_trip
        if not confirmed:  # nothing new has finished: asking faster would only cost requests
            self.rate = max(self.start, self.rate / GROWTH)
            return
        if not saturated or slow or 2 * confirmed < answered or self._above_noise:
            return
        if self.rate / 60 > self.concurrency / self._usual:  # the requests in flight bound it, not the rate
            return
        if self.found is None:
            raised = self.rate * GROWTH
        elif self.rate < self.found:  # back up to the rate the last cut found, no further at once
            raised = min(self.rate * GROWTH, self.found)
        else:  # above it, approach the limit
            raised = self.rate * (1 + CAREFUL_STEP)
        raised = raised if self.ceiling is None else min(self.ceiling, raised)
        if raised > self.rate:
            self.log.info("%s: %s a minute (more batches wait, and answers come back quickly)", self.what,
                          f"{raised:,.0f}")
        self.rate = raised


def budget_for(settings: ApiSettings, ceiling: float | None, concurrency: int, log: TaskLog,
               what: str = "Status requests", *, unpaced: bool = False) -> RequestBudget:
    """A wait's (or a load's) budget: the connection's starting rate, under the lower of the
    connection's ``max_requests_per_minute`` and the wait's own ``requests_per_minute`` (either may
    be unset)."""
    lowest = min(settings.max_requests_per_minute, math.inf if ceiling is None else ceiling)
    return RequestBudget(settings.requests_per_minute, None if lowest == math.inf else lowest, concurrency, log,
                         what, unpaced=unpaced)
