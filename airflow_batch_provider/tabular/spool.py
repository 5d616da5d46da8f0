"""The job being assembled on local disk before anything is paid for.

Request lines go to a JSONL file, cut into chunks (batches) by items and bytes; the rows of the job
(custom_id, original id, request fingerprint, chunk) go to a Parquet file written a record batch at
a time. Memory stays at one record batch whatever the input size, and the whole input is validated
before the first submit. The SHA-256 of the lines is the input fingerprint: same rows and same
request parameters, same fingerprint.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq


@dataclass(frozen=True)
class Chunk:
    offset: int
    size: int
    first_row: int
    rows: int


class RequestSpool:
    def __init__(self, directory: Path, id_type: pa.DataType, max_items: int, max_bytes: int) -> None:
        self.lines_path = directory / "requests.jsonl"
        self.rows_path = directory / "rows.parquet"
        self.max_items = max_items
        self.max_bytes = max_bytes
        self.schema = pa.schema([("custom_id", pa.string()), ("id", id_type),
                                 ("request_fingerprint", pa.string()), ("chunk", pa.int32())])
        self._lines = open(self.lines_path, "wb")
        self._rows = pq.ParquetWriter(self.rows_path, self.schema)
        self._hash = hashlib.sha256()
        self.chunks: list[Chunk] = []
        self.rows = 0
        self._rows_in_closed_chunks = 0
        self._chunk_start = 0
        self._chunk_bytes = 0
        self._chunk_rows = 0

    def add(self, lines: list[bytes], ids: pa.Array, custom_ids: list[str], fingerprints: list[str]) -> None:
        chunk_of_row = []
        for line in lines:
            if self._chunk_rows and (self._chunk_rows >= self.max_items
                                     or self._chunk_bytes + len(line) > self.max_bytes):
                self._close_chunk()
            self._lines.write(line)
            self._hash.update(line)
            self._chunk_bytes += len(line)
            self._chunk_rows += 1
            chunk_of_row.append(len(self.chunks))
        self.rows += len(lines)
        if lines:
            self._rows.write_batch(pa.record_batch(
                [pa.array(custom_ids, pa.string()), ids.cast(self.schema.field("id").type),
                 pa.array(fingerprints, pa.string()), pa.array(chunk_of_row, pa.int32())],
                schema=self.schema))

    def _close_chunk(self) -> None:
        self.chunks.append(Chunk(self._chunk_start, self._chunk_bytes, self._rows_in_closed_chunks,
                                 self._chunk_rows))
        self._rows_in_closed_chunks += self._chunk_rows
        self._chunk_start += self._chunk_bytes
        self._chunk_bytes = 0
        self._chunk_rows = 0

    def close(self) -> str:
        """Finish both files; returns the input fingerprint."""
        if self._chunk_rows:
            self._close_chunk()
        self._lines.close()
        self._rows.close()
        return self._hash.hexdigest()

    def read_chunk(self, chunk: Chunk) -> list[bytes]:
        with open(self.lines_path, "rb") as f:
            f.seek(chunk.offset)
            return f.read(chunk.size).splitlines(keepends=True)
