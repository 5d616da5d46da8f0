"""The job being assembled on local disk before anything is paid for.

Request lines go to a JSONL file, cut into chunks (batches) by items and bytes; the rows of the job
(custom_id, original id, request fingerprint, chunk) go to an Arrow IPC file written a record batch
at a time. Memory stays at one record batch whatever the input size, and the whole input is validated
before the first submit. ``digest`` (SHA-256) stands for the rows that go into the job (valid rows
not already landed), in order: it covers each row's custom_id and request fingerprint (which covers
its text and every request parameter), not the much longer lines. It is not the manifest's
``input_fingerprint``: that is the job's identity, which adds the batch limits
(:func:`~airflow_batch_provider.job.submission.job_identity`).
"""

from __future__ import annotations

import builtins
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

if TYPE_CHECKING:  # not at run time: the settings module loads Airflow, which the spool does not need
    from airflow_batch_provider.hooks.settings import BatchLimits


@dataclass(frozen=True)
class Chunk:
    """One future batch in the spool: where its lines are and which rows it holds."""
    offset: int
    size: int
    first_row: int
    rows: int


def _offsets(array: pa.Array) -> np.ndarray:
    """Value offsets of a binary/string array, large or not (``len(array) + 1`` of them)."""
    wide = pa.types.is_large_binary(array.type) or pa.types.is_large_string(array.type)
    all_offsets = np.frombuffer(array.buffers()[1], dtype=np.int64 if wide else np.int32)
    return all_offsets[array.offset: array.offset + len(array) + 1]


def _concatenated(array: pa.Array) -> memoryview:
    """The values of a binary or string array, back to back, without copying."""
    offsets = _offsets(array)
    return memoryview(array.buffers()[2])[int(offsets[0]):int(offsets[-1])]


def _rows_digest(custom_ids: pa.Array, fingerprints: pa.Array) -> memoryview:
    """The bytes ``digest`` covers for these rows: ``custom_id<TAB>fingerprint<LF>`` each."""
    return _concatenated(pc.binary_join_element_wise(custom_ids, "\t", fingerprints, "\n", ""))


class RequestSpool:
    """A job's request lines on local disk, cut into chunks within the batch limits, and its rows."""
    def __init__(self, directory: Path, id_type: pa.DataType, limits: BatchLimits) -> None:
        self.lines_path = directory / "requests.jsonl"
        self.rows_path = directory / "rows.arrow"
        self.limits = limits
        self.schema = pa.schema([("custom_id", pa.string()), ("id", id_type),
                                 ("request_fingerprint", pa.string()), ("chunk", pa.int32())])
        self._lines = open(self.lines_path, "wb")
        # Arrow IPC: an internal file read back in order, so no encoding cost on either side.
        self._rows = pa.ipc.new_stream(str(self.rows_path), self.schema)
        self._hash = hashlib.sha256()
        self.digest = ""
        self.chunks: list[Chunk] = []
        self.rows = 0
        self._rows_in_closed_chunks = 0
        self._chunk_start = 0
        self._chunk_bytes = 0
        self._chunk_rows = 0

    def add(self, lines: pa.Array, ids: pa.Array, custom_ids: pa.Array, fingerprints: pa.Array) -> None:
        """Append encoded rows (Arrow arrays, as :class:`EncodedBatch` holds them)."""
        if not len(lines):
            return
        chunk_of_row = self._cut(np.diff(_offsets(lines)))
        self._lines.write(_concatenated(lines))
        self._hash.update(_rows_digest(custom_ids, fingerprints))
        self.rows += len(lines)
        self._rows.write_batch(pa.record_batch(
            [custom_ids.cast(pa.string()), ids.cast(self.schema.field("id").type),
             fingerprints, pa.array(chunk_of_row, pa.int32())],
            schema=self.schema))

    def _cut(self, sizes: np.ndarray) -> np.ndarray:
        """Each row's chunk. A chunk closes when the next row would pass ``max_items`` or
        ``max_bytes`` (a row alone larger than ``max_bytes`` gets a chunk of its own), so a full
        chunk is closed only when the next row arrives (or at :meth:`close`). One step per chunk, not
        per row: the rows the open chunk can still take are found by a binary search of the running
        byte total."""
        ends = np.cumsum(sizes)
        chunk_of_row = np.empty(len(sizes), dtype=np.int32)
        start = 0
        while start < len(sizes):
            before = int(ends[start - 1]) if start else 0
            fit_by_bytes = int(np.searchsorted(ends, before + self.limits.max_bytes - self._chunk_bytes, side="right"))
            stop = min(len(sizes), start + self.limits.max_items - self._chunk_rows, fit_by_bytes)
            if stop <= start:
                if self._chunk_rows:
                    self._close_chunk()
                    continue
                stop = start + 1  # a row larger than max_bytes: a chunk of its own
            chunk_of_row[start:stop] = len(self.chunks)
            self._chunk_rows += stop - start
            self._chunk_bytes += int(ends[stop - 1]) - before
            start = stop
        return chunk_of_row

    def _close_chunk(self) -> None:
        self.chunks.append(Chunk(self._chunk_start, self._chunk_bytes, self._rows_in_closed_chunks,
                                 self._chunk_rows))
        self._rows_in_closed_chunks += self._chunk_rows
        self._chunk_start += self._chunk_bytes
        self._chunk_bytes = 0
        self._chunk_rows = 0

    def close(self) -> None:
        """Finish both files and the rows' digest."""
        if self._chunk_rows:
            self._close_chunk()
        self._lines.close()
        self._rows.close()
        self.digest = self._hash.hexdigest()

    @property
    def bytes(self) -> int:
        """The request lines' size, all chunks together."""
        return sum(chunk.size for chunk in self.chunks)

    def first_and_last_ids(self, chunks: list[Chunk]) -> list[tuple[str, str]]:
        """The first and last custom_id of each chunk (for error messages): the rows file is
        memory-mapped and read once, whatever the number of chunks."""
        with pa.memory_map(str(self.rows_path)) as source:
            ids = pa.ipc.open_stream(source).read_all().column("custom_id")
            return [(ids[c.first_row].as_py(), ids[c.first_row + c.rows - 1].as_py()) for c in chunks]

    def read_chunk(self, chunk: Chunk) -> list[builtins.bytes]:  # builtins: `bytes` here is the method
        """The request lines of one chunk, as sent."""
        with open(self.lines_path, "rb") as f:
            f.seek(chunk.offset)
            return f.read(chunk.size).splitlines(keepends=True)
