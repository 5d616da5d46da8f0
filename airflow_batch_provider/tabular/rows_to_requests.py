"""Arrow record batches -> validated JSONL request lines. No HTTP, no Airflow.

Row checks run on whole columns (pyarrow.compute) so the per-row Python work is only the encoding of
rows that passed. Every refused row is reported with its id and the reason.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

from airflow_batch_provider.protocol import InvalidRequestError, LineEncoder, Request, request_fingerprint

DEFAULT_MAX_TEXT_BYTES = 1_000_000


@dataclass(frozen=True)
class InvalidRow:
    row_id: object
    reason: str


@dataclass
class EncodedBatch:
    """What one record batch became: its request lines and, row for row, their ids and fingerprints."""

    lines: list[bytes]
    ids: pa.Array
    custom_ids: list[str]
    fingerprints: list[str]
    invalid: list[InvalidRow] = field(default_factory=list)


class RowEncoder:
    """Validates and encodes rows of ``(id_column, text_column)`` for one request type.

    Columns missing from the data are an error for the whole input (nothing is encoded).
    """

    def __init__(self, request: Request, id_column: str, text_column: str,
                 max_text_bytes: int = DEFAULT_MAX_TEXT_BYTES) -> None:
        self.request = request
        self.id_column = id_column
        self.text_column = text_column
        self.max_text_bytes = max_text_bytes
        self._encoder = LineEncoder(request)
        self._all_ids: set[str] = set()  # every id seen, valid row or not: ids must be unique

    def check_schema(self, schema: pa.Schema) -> None:
        missing = [c for c in (self.id_column, self.text_column) if c not in schema.names]
        if missing:
            raise InvalidRequestError(
                f"the input has no column {', '.join(map(repr, missing))}; "
                f"its columns are {', '.join(schema.names)}")
        id_type = schema.field(self.id_column).type
        if not (pa.types.is_integer(id_type) or pa.types.is_string(id_type)
                or pa.types.is_large_string(id_type) or pa.types.is_null(id_type)):
            raise InvalidRequestError(
                f"id column {self.id_column!r} must hold integers or strings, not {id_type}")

    def _reasons(self, batch: pa.RecordBatch) -> Iterator[tuple[int, str]]:
        ids = batch.column(self.id_column)
        text = batch.column(self.text_column)
        if not (pa.types.is_string(text.type) or pa.types.is_large_string(text.type) or pa.types.is_null(text.type)):
            for i in range(len(batch)):
                yield i, f"text column {self.text_column!r} holds {text.type}, not strings"
            return
        checks = [
            (pc.is_null(ids), "id is null"),
            (pc.is_null(text), "text is null"),
            (pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(text)), 0), "text is empty"),
            (pc.greater(pc.binary_length(text), self.max_text_bytes),
             f"text is longer than {self.max_text_bytes} bytes"),
        ]
        if pa.types.is_string(ids.type) or pa.types.is_large_string(ids.type):
            checks.append((pc.equal(pc.utf8_length(ids), 0), "id is empty"))
        for mask, reason in checks:
            mask = pc.fill_null(mask, False)
            if pc.any(mask).as_py():
                for i in pc.indices_nonzero(mask).to_pylist():
                    yield i, reason

    def encode(self, batch: pa.RecordBatch) -> EncodedBatch:
        """Lines for the valid rows of ``batch``; invalid rows are reported, not encoded."""
        bad: dict[int, str] = {}
        for index, reason in self._reasons(batch):
            bad.setdefault(index, reason)
        for index, value in enumerate(batch.column(self.id_column).to_pylist()):
            if value is not None:
                key = str(value)
                if key in self._all_ids:
                    bad[index] = "duplicate id"
                self._all_ids.add(key)
        ids = batch.column(self.id_column)
        texts = batch.column(self.text_column)
        if bad:
            keep = pa.array([i not in bad for i in range(len(batch))])
            invalid = [InvalidRow(ids[i].as_py(), reason) for i, reason in sorted(bad.items())]
            ids, texts = ids.filter(keep), texts.filter(keep)
        else:
            invalid = []
        custom_ids = [str(v) for v in ids.to_pylist()]
        lines, kept, kept_ids, fingerprints = [], [], [], []
        for index, (custom_id, text) in enumerate(zip(custom_ids, texts.to_pylist())):
            try:
                lines.append(self._encoder.encode(custom_id, text))
            except InvalidRequestError as exc:  # a duplicate id: reported like any other bad row
                invalid.append(InvalidRow(ids[index].as_py(), exc.reason))
                continue
            kept.append(index)
            kept_ids.append(custom_id)
            fingerprints.append(request_fingerprint(text, self.request))
        if len(kept) != len(custom_ids):
            ids = ids.take(pa.array(kept, type=pa.int64()))
        return EncodedBatch(lines, ids, kept_ids, fingerprints, invalid)
