"""Arrow record batches -> validated JSONL request lines. No HTTP, no Airflow.

Row checks run on whole columns (pyarrow.compute, numpy) so the per-row Python work is only the
encoding of rows that passed. Every refused row is reported with its id and the reason.

Duplicate ids are found with 64-bit hashes of the ids kept in a few sorted numpy runs (merged like
an LSM tree, so adding a batch costs about its own size): 8 bytes a row instead of a Python set of
strings, so memory stays nearly flat with input size. (Two different ids
sharing a 64-bit hash — about one chance in 10^8 for a million rows — would be reported as a
duplicate, never silently merged.)
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import msgspec
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from airflow_batch_provider.protocol import InvalidRequestError, LineEncoder, Request
from airflow_batch_provider.tabular.columns import require_columns
from airflow_batch_provider.tabular.fingerprint import Fingerprinter

DEFAULT_MAX_TEXT_BYTES = 1_000_000
INT64_MAX = 2**63 - 1


def _decoded(column: pa.Array) -> pa.Array:
    """A dictionary-encoded column as its plain values."""
    return column.cast(column.type.value_type) if pa.types.is_dictionary(column.type) else column


def _is_text(kind: pa.DataType) -> bool:
    return pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_string_view(kind)


_AS_BYTES = {pa.string(): pa.binary(), pa.large_string(): pa.large_binary(), pa.string_view(): pa.binary_view()}


def _invalid_utf8(column: pa.Array) -> list[int]:
    """Positions of the strings that are not valid UTF-8. Arrow checks strings it builds from Python,
    but not every Parquet file or buffer: a string written by a program that let a lone surrogate
    through arrives as bytes no decoder accepts, and would raise from the checks below. One pass in
    C finds whether any exists; the values are looked at one by one only when one does."""
    if column.type not in _AS_BYTES:
        return []
    try:
        column.validate(full=True)
        return []
    except pa.ArrowInvalid:
        pass
    bad = []
    for i, value in enumerate(column.cast(_AS_BYTES[column.type]).to_pylist()):  # a cast to bytes never checks
        try:
            value is None or value.decode()
        except UnicodeDecodeError:
            bad.append(i)
    return bad


def _row_id(ids: pa.Array, i: int) -> object:
    """The id as a refusal names it: its bytes when it is not valid UTF-8 (``as_py`` would raise)."""
    try:
        return ids[i].as_py()
    except UnicodeDecodeError:
        return ids.cast(_AS_BYTES[ids.type])[i].as_py()


def landing_id_type(kind: pa.DataType) -> pa.DataType:
    """The type ids land with in every destination: int64 for any integer type (SQL databases store
    signed 64-bit integers), string for any string type; None when the type cannot be an id."""
    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    if pa.types.is_integer(kind):
        return pa.int64()
    if _is_text(kind) or pa.types.is_null(kind):
        return pa.string()
    return None


@dataclass(frozen=True)
class InvalidRow:
    """A row refused before paying: its id and why."""
    row_id: object
    reason: str


@dataclass
class EncodedBatch:
    """What one record batch became: its request lines and, row for row, their original ids,
    custom_ids and request fingerprints — all Arrow arrays, no Python object per row."""

    lines: pa.Array
    ids: pa.Array
    custom_ids: pa.Array
    fingerprints: pa.Array
    invalid: list[InvalidRow] = field(default_factory=list)


_JSON = msgspec.json.Encoder()


def _json_strings(values: list[str]) -> pa.Array:
    """Each value JSON-encoded, in one C call (``encode_lines``; an encoded string never holds a
    raw newline, so splitting the output is safe)."""
    return pa.array(_JSON.encode_lines(values).split(b"\n")[:-1], pa.large_binary())


class RowEncoder:
    """Validates and encodes rows of ``(id_column, text_column)`` for one request type."""

    def __init__(self, request: Request, id_column: str, text_column: str,
                 max_text_bytes: int = DEFAULT_MAX_TEXT_BYTES, *, max_id_chars: int | None = None,
                 max_id_bytes: int | None = None, id_limit: str = "") -> None:
        self.request = request
        self.id_column = id_column
        self.text_column = text_column
        self.max_text_bytes = max_text_bytes
        # A string id lands in the destination's key column: longer ones could be paid for, never landed.
        self.max_id_chars = max_id_chars
        self.max_id_bytes = max_id_bytes
        self.id_limit = id_limit
        self._encoder = LineEncoder(request)
        self._fingerprint = Fingerprinter(request)
        self._runs: list[np.ndarray] = []  # sorted runs of the hashes of every id so far

    def check_schema(self, schema: pa.Schema) -> pa.DataType:
        """Columns missing from the data are an error for the whole input (nothing is encoded).
        Returns the type the ids land with (:func:`landing_id_type`)."""
        require_columns("the input", (self.id_column, self.text_column), schema.names, InvalidRequestError)
        id_type = schema.field(self.id_column).type
        landing = landing_id_type(id_type)
        if landing is None:
            raise InvalidRequestError(
                f"id column {self.id_column!r} must hold integers or strings, not {id_type}")
        return landing

    def _reasons(self, ids: pa.Array, text: pa.Array, original_ids: pa.Array) -> Iterator[tuple[int, str]]:
        # Only uint64 goes past int64 (and only uint64 can hold INT64_MAX as a scalar to compare with).
        if pa.types.is_uint64(original_ids.type):  # above int64: no SQL column holds it
            mask = pc.fill_null(pc.greater(original_ids, pa.scalar(INT64_MAX, original_ids.type)), False)
            for i in pc.indices_nonzero(mask).to_pylist():
                yield i, f"id is larger than {INT64_MAX}, the largest integer SQL databases store"
        if not (_is_text(text.type) or pa.types.is_null(text.type)):
            for i in range(len(text)):
                yield i, f"text column {self.text_column!r} holds {text.type}, not strings"
            return
        checks = [
            (pc.is_null(ids), "id is null"),
            (pc.is_null(text), "text is null"),
            (pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(text)), 0), "text is empty"),
            (pc.greater(pc.binary_length(text), self.max_text_bytes),
             f"text is longer than {self.max_text_bytes} bytes"),
            (pc.equal(pc.utf8_length(ids), 0), "id is empty"),
            # One rule for every destination: PostgreSQL cannot store NUL in text, so no row carries it.
            (pc.match_substring(ids, "\x00"), "id contains a NUL character (\\x00), which databases cannot store"),
            (pc.match_substring(text, "\x00"), "text contains a NUL character (\\x00), which databases cannot store"),
        ]
        if _is_text(original_ids.type) and self.max_id_chars is not None:
            checks.append((pc.greater(pc.utf8_length(ids), self.max_id_chars),
                           f"id is longer than {self.max_id_chars} characters: {self.id_limit}"))
        if _is_text(original_ids.type) and self.max_id_bytes is not None:
            checks.append((pc.greater(pc.binary_length(ids), self.max_id_bytes),
                           f"id is longer than {self.max_id_bytes} UTF-8 bytes: {self.id_limit}"))
        for mask, reason in checks:
            mask = pc.fill_null(mask, False)
            if pc.any(mask).as_py():
                for i in pc.indices_nonzero(mask).to_pylist():
                    yield i, reason

    def _duplicates(self, custom_ids: pa.Array) -> Iterator[int]:
        """Rows whose id was seen before (in this batch or an earlier one)."""
        present = np.flatnonzero(~custom_ids.is_null().to_numpy(zero_copy_only=False))
        if not len(present):
            return
        hashes = pd.util.hash_array(custom_ids.take(pa.array(present)).to_numpy(zero_copy_only=False),
                                    categorize=False)
        earlier = np.zeros(len(hashes), dtype=bool)
        for run in self._runs:
            earlier |= run[np.searchsorted(run, hashes).clip(max=len(run) - 1)] == hashes
        _, first = np.unique(hashes, return_index=True)
        again = np.ones(len(hashes), dtype=bool)
        again[first] = False
        for position in np.flatnonzero(earlier | again):
            yield int(present[position])
        self._runs.append(np.sort(hashes))
        while len(self._runs) > 1 and len(self._runs[-1]) >= len(self._runs[-2]):
            newest = self._runs.pop()
            self._runs[-1] = np.sort(np.concatenate([self._runs[-1], newest]), kind="stable")

    def encode(self, batch: pa.RecordBatch) -> EncodedBatch:
        """Lines for the valid rows of ``batch``; invalid rows are reported, not encoded."""
        original_ids = _decoded(batch.column(self.id_column))
        texts = _decoded(batch.column(self.text_column))
        if pa.types.is_string_view(texts.type) or pa.types.is_null(texts.type):  # Arrow's string functions
            texts = texts.cast(pa.large_string())  # have no kernel for either (a column of only nulls is null)
        named_ids = original_ids  # the ids as refusals name them
        bad: dict[int, str] = {}
        # Strings that are not UTF-8 are refused first, and nulled for the checks that follow (Arrow's
        # string functions raise on them, and no destination could store them).
        for column, what in ((original_ids, "id"), (texts, "text")):
            for index in _invalid_utf8(column):
                bad.setdefault(index, f"{what} is not valid UTF-8 (a lone surrogate or broken bytes)")
        if bad:
            unreadable = np.zeros(len(batch), dtype=bool)
            unreadable[list(bad)] = True
            mask = pa.array(unreadable)
            original_ids, texts = (pc.if_else(mask, pa.scalar(None, column.type), column)
                                   if column.type in _AS_BYTES else column for column in (original_ids, texts))
        custom_ids = pc.cast(original_ids, pa.string())
        ids = original_ids.cast(landing_id_type(original_ids.type), safe=False)  # too large: refused below
        for index, reason in self._reasons(custom_ids, texts, original_ids):
            bad.setdefault(index, reason)
        for index in self._duplicates(custom_ids):
            bad.setdefault(index, "duplicate id")
        invalid: list[InvalidRow] = []
        if bad:
            keep = np.ones(len(batch), dtype=bool)
            keep[list(bad)] = False
            invalid = [InvalidRow(_row_id(named_ids, i), reason) for i, reason in sorted(bad.items())]
            ids, texts, custom_ids = (column.filter(pa.array(keep)) for column in (ids, texts, custom_ids))
        text_list = texts.to_pylist()
        head, middle, tail = self._encoder.parts
        lines = pc.binary_join_element_wise(pa.scalar(head, pa.large_binary()),
                                            _json_strings(custom_ids.to_pylist()), pa.scalar(middle, pa.large_binary()),
                                            _json_strings(text_list), pa.scalar(tail, pa.large_binary()),
                                            pa.scalar(b"", pa.large_binary()))
        fingerprints = self._fingerprint.many(text_list)
        return EncodedBatch(lines, ids, custom_ids, fingerprints, invalid)
