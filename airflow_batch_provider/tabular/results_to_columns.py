"""Output lines -> typed Arrow columns, one record batch per API batch. No HTTP, no Airflow.

Every row gets the original id (its original type), ``status`` (``ok`` / ``error`` / ``missing``),
``error_code``, ``error_message``, ``batch_id``, ``model``, ``request_fingerprint`` and
``loaded_at``, then the model's own columns:

- summarize: ``summary``, ``input_chars``, ``output_chars``;
- classify: ``top_label``, ``scores`` (JSON), ``reasoning``, and with ``label_scores=True`` one
  ``score_<label>`` column per label;
- extract: ``entities`` (JSON list of {type, text, confidence, start, end}), and with
  ``entity_columns="first"`` or ``"all"`` one ``entity_<type>`` column per requested type (the first
  value, or a JSON list of all values).
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime
from typing import Any

import msgspec
import pyarrow as pa

from airflow_batch_provider.protocol import ItemError, OutputLine

STATUS_OK, STATUS_ERROR, STATUS_MISSING = "ok", "error", "missing"
# Rows per record batch. API batches are small (50 rows in v2); a record batch, a COPY or a Parquet
# row group for each would cost more in per-call overhead than the rows themselves.
RECORD_BATCH_ROWS = 32_768
_UNSAFE = re.compile(r"[^0-9a-zA-Z_]+")


# Derived names are kept within what every database holds whole (PostgreSQL: 63 bytes; longer
# names are silently truncated there, and the next load misses the column).
MAX_COLUMN_NAME = 63


def column_name(prefix: str, label: str) -> str:
    """A column name any SQL dialect takes without quoting surprises: ``score_very_positive``.
    A long one is shortened the same way every time, keeping a hash of the whole label
    (``score_<first 45 characters>_<12 hex digits>``), so two long labels stay two columns."""
    name = f"{prefix}_{_UNSAFE.sub('_', label).strip('_').lower() or 'x'}"
    if len(name) <= MAX_COLUMN_NAME:
        return name
    digest = hashlib.blake2b(label.encode("utf-8", "surrogatepass"), digest_size=6).hexdigest()
    return f"{name[:MAX_COLUMN_NAME - len(digest) - 1].rstrip('_')}_{digest}"


class ResultColumns:
    """The destination schema of one job, and a buffer that turns output lines into its rows."""

    def __init__(self, *, model: str, request: dict[str, Any], id_column: str, id_type: pa.DataType,
                 label_scores: bool = False, entity_columns: str | None = None) -> None:
        if entity_columns not in (None, "first", "all"):
            raise ValueError(f"entity_columns must be None, 'first' or 'all', got {entity_columns!r}")
        self.model = model
        self.id_column = id_column
        self.label_columns: dict[str, str] = {}
        self.entity_columns: dict[str, str] = {}
        self.entity_mode = entity_columns
        fields = [
            pa.field(id_column, id_type, nullable=False),
            pa.field("status", pa.string(), nullable=False),
            pa.field("error_code", pa.string()),
            pa.field("error_message", pa.string()),
            pa.field("batch_id", pa.string(), nullable=False),
            pa.field("model", pa.string(), nullable=False),
            pa.field("request_fingerprint", pa.string(), nullable=False),
            pa.field("loaded_at", pa.timestamp("us", tz="UTC"), nullable=False),
        ]
        if model == "summarize":
            fields += [pa.field("summary", pa.string()), pa.field("input_chars", pa.int64()),
                       pa.field("output_chars", pa.int64())]
        elif model == "classify":
            fields += [pa.field("top_label", pa.string()), pa.field("scores", pa.string()),
                       pa.field("reasoning", pa.string())]
            if label_scores:
                self.label_columns = {label["name"]: column_name("score", label["name"])
                                      for label in request.get("labels", [])}
                fields += [pa.field(name, pa.float64()) for name in self.label_columns.values()]
        elif model == "extract":
            fields += [pa.field("entities", pa.string())]
            if entity_columns:
                self.entity_columns = {label: column_name("entity", label) for label in request.get("entities", {})}
                fields += [pa.field(name, pa.string()) for name in self.entity_columns.values()]
        else:
            raise ValueError(f"unknown model {model!r}")
        self._refuse_collisions(fields, id_column)
        self.schema = pa.schema(fields)

    def _refuse_collisions(self, fields: list[pa.Field], id_column: str) -> None:
        """Two sources of one column name would overwrite each other at load: name both."""
        derived = {*self.label_columns.values(), *self.entity_columns.values()}
        sources: dict[str, str] = {id_column: f"the id column {id_column!r}"}
        for f in fields[1:]:
            if f.name in derived:
                continue
            if f.name in sources:
                raise ValueError(f"{sources[f.name]} and the result column {f.name!r} share a name; "
                                 "rename the id column")
            sources[f.name] = f"the result column {f.name!r}"
        for kind, mapping in (("label", self.label_columns), ("entity type", self.entity_columns)):
            for name, column in mapping.items():
                if column in sources:
                    raise ValueError(f"{kind} {name!r} and {sources[column]} would both land in column "
                                     f"{column!r}; rename one of them")
                sources[column] = f"{kind} {name!r}"

    def buffer(self) -> RowBuffer:
        """A new buffer that collects output lines into record batches of these columns."""
        return RowBuffer(self)


class _Missing(OutputLine, frozen=True, gc=False):
    """Stands for rows that came back with no output line; its error says why."""


class RowBuffer:
    """Rows of one record batch, from any number of API batches. Lines are kept as they come and
    turned into columns at the end, one list comprehension per column (much cheaper than appending
    to every column per row)."""

    def __init__(self, columns: ResultColumns) -> None:
        self.columns = columns
        self.loaded_at = datetime.now(UTC)
        self._batch_ids: list[str] = []
        # Parallel lists, not a tuple per row: tuples would be millions of objects for the
        # garbage collector to walk, and it walked them often enough to slow the load by a third.
        self._ids: list[Any] = []
        self._fingerprints: list[str] = []
        self._lines: list[OutputLine] = []

    def __len__(self) -> int:
        return len(self._lines)

    def add_lines(self, batch_id: str, ids: list[Any], fingerprints: list[str], lines: list[OutputLine]) -> int:
        """Rows of one API batch (ids, fingerprints) and the output line of each, in the same order;
        returns how many of them land ``ok`` (the others land ``error``)."""
        self._add(batch_id, ids, fingerprints)
        self._lines.extend(lines)
        return len(lines) - _results(lines).count(None)

    def add_missing(self, batch_id: str, ids: list[Any], fingerprints: list[str], code: str, message: str) -> None:
        """Rows of one API batch that came back with no line, for one reason."""
        self._add(batch_id, ids, fingerprints)
        self._lines.extend([_Missing("", self.columns.model, None, ItemError(code, message))] * len(ids))

    def _add(self, batch_id: str, ids: list[Any], fingerprints: list[str]) -> None:
        self._batch_ids.extend([batch_id] * len(ids))
        self._ids.extend(ids)
        self._fingerprints.extend(fingerprints)

    def _model_columns(self, results: list) -> dict[str, list]:
        encode = msgspec.json.encode  # JSON columns stay UTF-8 bytes: Arrow takes them as strings, uncopied
        if self.columns.model == "summarize":
            return {"summary": [r and r.summary for r in results],
                    "input_chars": [r and r.input_chars for r in results],
                    "output_chars": [r and r.output_chars for r in results]}
        if self.columns.model == "classify":
            data = {"top_label": [r and r.top_label for r in results],
                    "scores": [r and encode(r.scores) for r in results],
                    "reasoning": [r and r.reasoning for r in results]}
            for label, name in self.columns.label_columns.items():
                data[name] = [r and r.scores.get(label) for r in results]
            return data
        data = {"entities": [r and encode([{"type": e.type, "text": e.text, "confidence": e.confidence,
                                            "start": e.start, "end": e.end} for e in r.entities])
                             for r in results]}
        if self.columns.entity_columns:
            grouped = [r and r.by_type() for r in results]
            first = self.columns.entity_mode == "first"
            for label, name in self.columns.entity_columns.items():
                values = [g and g.get(label) for g in grouped]
                data[name] = [(v[0] if first else encode(v)) if v else None for v in values]
        return data

    def to_record_batch(self) -> pa.RecordBatch:
        """The buffered rows as one record batch, typed by the columns."""
        lines = self._lines
        results = _results(lines)
        data = {self.columns.id_column: self._ids, "batch_id": self._batch_ids,
                "request_fingerprint": self._fingerprints, **self._model_columns(results)}
        # Columns every row shares are built by Arrow; when every row is ok, so are the error columns.
        shared: dict[str, Any] = {"model": self.columns.model, "loaded_at": self.loaded_at}
        if results.count(None):
            errors = [None if r is not None else line.error or _NO_RESULT
                      for r, line in zip(results, lines, strict=True)]
            data["status"] = [STATUS_OK if r is not None else STATUS_MISSING if line.__class__ is _Missing
                              else STATUS_ERROR for r, line in zip(results, lines, strict=True)]
            data["error_code"] = [e and e.code for e in errors]
            data["error_message"] = [e and e.message for e in errors]
        else:
            shared.update(status=STATUS_OK, error_code=None, error_message=None)
        return pa.record_batch([pa.repeat(pa.scalar(shared[f.name], f.type), len(lines)) if f.name in shared
                                else pa.array(data[f.name], f.type) for f in self.columns.schema],
                               schema=self.columns.schema)


_NO_RESULT = ItemError("no_result", "")


def _results(lines: list[OutputLine]) -> list:
    """Each line's result, None where the row does not land ``ok``."""
    return [line.result if line.error is None else None for line in lines]
