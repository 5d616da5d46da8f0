"""The logger our helpers accept: what they call on it, so a task's ``self.log`` (Airflow's structlog
logger) and a standard ``logging.Logger`` both fit."""

from __future__ import annotations

import time
from typing import Any, Protocol


class TaskLog(Protocol):
    """What the package needs of a logger, one method per level: Airflow's task logger or any
    ``logging.Logger``."""

    def debug(self, msg: Any, /, *args: Any) -> Any:
        """Log at DEBUG."""

    def info(self, msg: Any, /, *args: Any) -> Any:
        """Log at INFO."""

    def warning(self, msg: Any, /, *args: Any) -> Any:
        """Log at WARNING."""

    def error(self, msg: Any, /, *args: Any) -> Any:
        """Log at ERROR."""


class ProgressLog:
    """A progress line at most every ``every`` seconds (and at the end), the same for submit, wait
    and load: done of total, the share, the rate since the start and the time left at that rate.

    ``ProgressLog(log, "Submitted", "batches", total).update(done, "12 in flight")`` logs
    ``Submitted 1,200 of 20,000 batches (6.0 %), 41.3 a second, about 6 min 47 s left; 12 in flight``.
    """

    QUIET = 300.0  # seconds without progress after which a line says the job is still there

    def __init__(self, log: TaskLog, verb: str, unit: str, total: int, every: float = 5.0) -> None:
        self.log, self.verb, self.unit, self.total, self.every = log, verb, unit, total, every
        self.started = self.logged = time.monotonic()
        self.first: int | None = None  # done at the first update: what an earlier try had done
        self.last: int | None = None  # done at the last line
        self.ended = False

    def update(self, done: int, detail: str = "", *, force: bool = False) -> None:
        """A line if ``done`` moved and ``every`` seconds have passed, or at the end (once), or
        when nothing moved for :attr:`QUIET` seconds."""
        now = time.monotonic()
        if self.first is None:
            self.first = done
        end = done >= self.total and not self.ended
        moved = done != self.last and now - self.logged >= self.every
        if not (force or end or moved or now - self.logged >= self.QUIET):
            return
        self.logged, self.last, self.ended = now, done, self.ended or done >= self.total
        self.log.info("%s", self.line(done, now) + (f"; {detail}" if detail else ""))

    def line(self, done: int, now: float) -> str:
        """The progress line: done of total, the share, and the rate since the start."""
        share = f" ({100 * done / self.total:.1f} %)" if self.total else ""
        text = f"{self.verb} {done:,} of {self.total:,} {self.unit}{share}"
        rate = (done - (self.first or 0)) / max(now - self.started, 1e-9)
        if rate > 0 and done < self.total:
            text += f", {rate:,.1f} a second, about {_duration((self.total - done) / rate)} left"
        return text


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min {seconds} s" if minutes else f"{seconds} s"
