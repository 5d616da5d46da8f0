"""The emulator's batch store: SQLite, so a restarted emulator still answers for its batches.

A submission is written while it streams in, under state ``receiving`` that no route shows; only when
the whole body has been read and every line passed does it become ``queued``. A rejected or
interrupted upload is deleted, so "400 and nothing queued" holds for bodies of any size without
keeping them in memory.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS batches (
    id TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    total INTEGER NOT NULL DEFAULT 0,
    completed INTEGER NOT NULL DEFAULT 0,
    failed INTEGER NOT NULL DEFAULT 0,
    next_idx INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    idempotency_key TEXT UNIQUE,
    body_sha256 TEXT
);
CREATE INDEX IF NOT EXISTS batches_by_state ON batches (state, created_at);
CREATE TABLE IF NOT EXISTS items (
    batch_id TEXT NOT NULL,
    idx INTEGER NOT NULL,
    line BLOB NOT NULL,
    output BLOB,
    PRIMARY KEY (batch_id, idx)
) WITHOUT ROWID;
"""
VISIBLE = ("queued", "processing", "completed", "failed")


@dataclass(frozen=True)
class BatchRow:
    """One batch as the store holds it."""
    id: str
    state: str
    total: int
    completed: int
    failed: int
    next_idx: int
    created_at: float
    idempotency_key: str | None
    body_sha256: str | None = None


class BatchStore:
    """Batches and their items in SQLite, one connection per thread."""
    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()
        self._connection().executescript(_SCHEMA)
        columns = {row[1] for row in self._connection().execute("PRAGMA table_info(batches)")}
        if "body_sha256" not in columns:  # a data directory from an older emulator
            self._connection().execute("ALTER TABLE batches ADD COLUMN body_sha256 TEXT")
        with self._write() as conn:
            # Uploads cut short by a crash or restart never became visible; drop them.
            conn.execute("DELETE FROM items WHERE batch_id IN (SELECT id FROM batches WHERE state = 'receiving')")
            conn.execute("DELETE FROM batches WHERE state = 'receiving'")

    def _connection(self) -> sqlite3.Connection:
        """This thread's connection (autocommit: each read is its own snapshot)."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            self._local.conn = conn
        return conn

    def _write(self) -> _Transaction:
        return _Transaction(self._connection())

    # -- submission ------------------------------------------------------------------------------
    def begin_batch(self, batch_id: str, created_at: float, idempotency_key: str | None) -> None:
        """Record a batch whose body is being received."""
        with self._write() as conn:
            conn.execute(
                "INSERT INTO batches (id, state, created_at, idempotency_key) VALUES (?, 'receiving', ?, ?)",
                (batch_id, created_at, idempotency_key),
            )

    def add_items(self, batch_id: str, first_idx: int, lines: Sequence[bytes]) -> None:
        """Store request lines of a batch being received."""
        with self._write() as conn:
            conn.executemany(
                "INSERT INTO items (batch_id, idx, line) VALUES (?, ?, ?)",
                ((batch_id, first_idx + offset, line) for offset, line in enumerate(lines)),
            )

    def seal_batch(self, batch_id: str, total: int, body_sha256: str | None = None) -> None:
        """Mark a received batch queued, with its size and body hash."""
        with self._write() as conn:
            conn.execute("UPDATE batches SET state = 'queued', total = ?, body_sha256 = ? WHERE id = ?",
                         (total, body_sha256, batch_id))

    def discard_batch(self, batch_id: str) -> None:
        """Forget a batch whose body was not received whole."""
        with self._write() as conn:
            conn.execute("DELETE FROM items WHERE batch_id = ?", (batch_id,))
            conn.execute("DELETE FROM batches WHERE id = ?", (batch_id,))

    # -- reading ---------------------------------------------------------------------------------
    def get(self, batch_id: str) -> BatchRow | None:
        """A batch, unless it does not exist or is still being received."""
        conn = self._connection()
        row = conn.execute("SELECT * FROM batches WHERE id = ?", (batch_id,)).fetchone()
        if row is None or row[1] == "receiving":
            return None
        return BatchRow(*row)

    def find_by_idempotency_key(self, key: str) -> BatchRow | None:
        """The batch an Idempotency-Key made, if any."""
        conn = self._connection()
        row = conn.execute("SELECT * FROM batches WHERE idempotency_key = ?", (key,)).fetchone()
        return None if row is None else BatchRow(*row)

    def iter_output(self, batch_id: str, page_size: int = 1000) -> Iterator[bytes]:
        """Output lines in input order, one block of ``page_size`` lines per item.

        Pages keep memory flat, and whole blocks keep the web server from handing every single
        line to a thread of its own.
        """
        after = -1
        while True:
            conn = self._connection()
            rows = conn.execute(
                "SELECT idx, output FROM items WHERE batch_id = ? AND idx > ? ORDER BY idx LIMIT ?",
                (batch_id, after, page_size),
            ).fetchall()
            if not rows:
                return
            after = rows[-1][0]
            yield b"".join(output for _, output in rows if output is not None)

    def counts(self) -> dict[str, int]:
        """Batches and items by state."""
        conn = self._connection()
        rows = conn.execute(
            "SELECT state, COUNT(*), COALESCE(SUM(total), 0) FROM batches GROUP BY state"
        ).fetchall()
        counts = {"batches": 0, "items": 0}
        for state, batches, items in rows:
            if state in VISIBLE:
                counts["batches"] += batches
                counts["items"] += items
                counts[f"batches_{state}"] = batches
        return counts

    # -- processing ------------------------------------------------------------------------------
    def next_active(self, ready_before: float) -> BatchRow | None:
        """The oldest batch that still has work and whose start delay has passed."""
        conn = self._connection()
        row = conn.execute(
            "SELECT * FROM batches WHERE state IN ('queued', 'processing') AND created_at <= ? "
            "ORDER BY created_at, id LIMIT 1",
            (ready_before,),
        ).fetchone()
        return None if row is None else BatchRow(*row)

    def pending_items(self, batch_id: str, from_idx: int, limit: int) -> list[tuple[int, bytes]]:
        """A batch's next items to process, from ``from_idx``."""
        conn = self._connection()
        return conn.execute(
            "SELECT idx, line FROM items WHERE batch_id = ? AND idx >= ? ORDER BY idx LIMIT ?",
            (batch_id, from_idx, limit),
        ).fetchall()

    def record_outputs(self, batch: BatchRow, outputs: Sequence[tuple[int, bytes]], completed: int,
                       failed: int) -> None:
        """Store a slice of results and advance the batch, in one transaction (restart-safe)."""
        next_idx = outputs[-1][0] + 1
        state = "completed" if next_idx >= batch.total else "processing"
        with self._write() as conn:
            conn.executemany(
                "UPDATE items SET output = ? WHERE batch_id = ? AND idx = ?",
                ((output, batch.id, idx) for idx, output in outputs),
            )
            conn.execute(
                "UPDATE batches SET completed = completed + ?, failed = failed + ?, next_idx = ?, "
                "state = ? WHERE id = ?",
                (completed, failed, next_idx, state, batch.id),
            )

    def set_state(self, batch_id: str, state: str) -> None:
        """Set a batch's state."""
        with self._write() as conn:
            conn.execute("UPDATE batches SET state = ? WHERE id = ?", (state, batch_id))

    def close(self) -> None:
        """Close this thread's connection."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None


class _Transaction:
    """``with store._write() as conn``: BEGIN IMMEDIATE .. COMMIT, ROLLBACK on error."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type, exc, tb) -> None:
        self.conn.execute("ROLLBACK" if exc_type else "COMMIT")
