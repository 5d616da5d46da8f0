"""The ledger: which chunks of this task instance's job the API has accepted, and which may have
reached it, kept in Airflow's ``task_state_store`` so that every try of the task sees it.

The rule that keeps a batch paid for once: **a chunk is marked in flight before its POST leaves**,
and marked accepted (with its batch id) or cleared (known not to have been created) after. A
chunk found in flight by a later try may exist on the server; it is resent only where the server
is known to honour ``Idempotency-Key`` or the user said so (:mod:`.submission` decides).

Writes through ``task_state_store`` cost tens of milliseconds each, so chunks are stored in
windows of :data:`WINDOW_CHUNKS` (one key each) and written in groups: one write marks the next
few chunks in flight and records the outcomes that came back since the last write
(:class:`.send_tracker.SendTracker` decides when). Nothing accepted can go unrecorded at any crash
point: until it is recorded, an accepted chunk is "in flight"; and no more chunks are shown in
flight than a small multiple of the calls under way, so a try killed at any moment leaves few
chunks ambiguous.

Keys: ``scaledown:job`` -> ``{job_id, identity, chunks, window}``; ``scaledown:window:<w>`` ->
``{"accepted": {chunk: batch_id}, "in_flight": [chunk, ...]}``. A try reads the header once and
the windows already started (windows start in order), never one key per chunk.

Retention: the keys never expire while the job is being submitted (a failed try may be retried, or
cleared by hand, months later); once every chunk is accepted and the manifest is written, the
submit replaces them with a header naming the manifest, kept for the store's default retention
(:meth:`Ledger.close`): from then on the manifest is the record.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from airflow.sdk.execution_time.context import NEVER_EXPIRE

WINDOW_CHUNKS = 256
JOB_KEY = "scaledown:job"


def _window_key(window: int) -> str:
    return f"scaledown:window:{window}"


@dataclass
class LedgerEntry:
    """What the ledger holds for one job."""

    job_id: str
    identity: str
    chunks: int
    window: int = WINDOW_CHUNKS
    accepted: dict[int, str] = field(default_factory=dict)
    in_flight: set[int] = field(default_factory=set)
    complete: str | None = None  # every chunk accepted: the location of the job's manifest

    def paid(self) -> int:
        """Batches this entry knows to be paid for."""
        return self.chunks if self.complete else len(self.accepted)

    def window_of(self, chunk: int) -> int:
        """The window (a group of chunks stored as one value) that holds ``chunk``."""
        return chunk // self.window

    def windows(self) -> int:
        """How many windows the job's chunks fill."""
        return -(-self.chunks // self.window)


class Ledger:
    """Reads and writes a :class:`LedgerEntry` in a ``task_state_store`` (None: nothing is kept,
    every call is a no-op and :meth:`load` finds nothing)."""

    def __init__(self, store: Any) -> None:
        self.store = store

    @property
    def durable(self) -> bool:
        """True when acceptances are kept beyond this try (a task state store is there)."""
        return self.store is not None

    def load(self) -> LedgerEntry | None:
        """What earlier tries of the task recorded for its job, or None."""
        if self.store is None:
            return None
        header = self.store.get(JOB_KEY)
        if not header:
            return None
        entry = LedgerEntry(job_id=header["job_id"], identity=header["identity"], chunks=header["chunks"],
                            window=header.get("window", WINDOW_CHUNKS), complete=header.get("complete"))
        if entry.complete:
            return entry
        for window in range(entry.windows()):
            value = self.store.get(_window_key(window))
            if not value:
                break  # windows are started in order: none after this one was started either
            entry.accepted.update((int(chunk), batch_id) for chunk, batch_id in value["accepted"].items())
            entry.in_flight.update(value["in_flight"])
        return entry

    def start(self, entry: LedgerEntry) -> None:
        """Record a new job: its id, its identity and its chunks, before the first POST."""
        self._set(JOB_KEY, {"job_id": entry.job_id, "identity": entry.identity, "chunks": entry.chunks,
                            "window": entry.window})

    @staticmethod
    def window_value(entry: LedgerEntry, window: int) -> dict[str, Any]:
        """What ``entry`` knows of one window's chunks, as its key holds it."""
        chunks = range(window * entry.window, min((window + 1) * entry.window, entry.chunks))
        return {"accepted": {str(c): entry.accepted[c] for c in chunks if c in entry.accepted},
                "in_flight": sorted(c for c in chunks if c in entry.in_flight)}

    def write_values(self, values: Mapping[int, Mapping[str, Any]]) -> None:
        """Write windows' values taken earlier with :meth:`window_value`, one call each."""
        for window, value in values.items():
            self._set(_window_key(window), value)

    def forget(self) -> None:
        """Drop everything kept of the job (one call: the task instance's store holds nothing else of ours)."""
        if self.store is not None:
            self.store.clear()

    def close(self, entry: LedgerEntry, manifest: str) -> None:
        """The job is wholly accepted and its manifest written: its windows are no longer needed (one
        call; the task instance's store holds nothing else of ours). A header is kept, for the
        store's default retention, so that a run of this task cleared by hand later still knows the
        job (with other input: :class:`~.errors.InputChangedError`, not a second bill)."""
        if self.store is None:
            return
        self.forget()
        self.store.set(JOB_KEY, {"job_id": entry.job_id, "identity": entry.identity, "chunks": entry.chunks,
                                 "complete": manifest})

    def _set(self, key: str, value: Mapping[str, Any]) -> None:
        if self.store is not None:  # kept until the job is accepted, however long a retry takes to come
            self.store.set(key, dict(value), retention=NEVER_EXPIRE)

