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

import re
from datetime import datetime, timezone
from typing import Any

import msgspec
import pyarrow as pa

from airflow_batch_provider.protocol import ClassifyResult, ExtractResult, OutputLine, SummarizeResult

STATUS_OK, STATUS_ERROR, STATUS_MISSING = "ok", "error", "missing"
_UNSAFE = re.compile(r"[^0-9a-zA-Z_]+")


def column_name(prefix: str, label: str) -> str:
    """A column name any SQL dialect takes without quoting surprises: ``score_very_positive``."""
    return f"{prefix}_{_UNSAFE.sub('_', label).strip('_').lower() or 'x'}"


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
        if len({f.name for f in fields}) != len(fields):
            raise ValueError(f"two result columns would share a name: {[f.name for f in fields]}")
        self.schema = pa.schema(fields)

    def buffer(self) -> RowBuffer:
        return RowBuffer(self)


class RowBuffer:
    """Rows of one record batch, column by column (lists are cheaper than dicts per row)."""

    def __init__(self, columns: ResultColumns) -> None:
        self.columns = columns
        self.loaded_at = datetime.now(timezone.utc)
        self.data: dict[str, list] = {name: [] for name in columns.schema.names}

    def __len__(self) -> int:
        return len(self.data["status"])

    def _common(self, row_id: Any, status: str, code: str | None, message: str | None, batch_id: str,
                fingerprint: str) -> None:
        d = self.data
        d[self.columns.id_column].append(row_id)
        d["status"].append(status)
        d["error_code"].append(code)
        d["error_message"].append(message)
        d["batch_id"].append(batch_id)
        d["model"].append(self.columns.model)
        d["request_fingerprint"].append(fingerprint)
        d["loaded_at"].append(self.loaded_at)

    def _empty_result(self) -> None:
        for name in self.columns.schema.names[8:]:
            self.data[name].append(None)

    def add_line(self, row_id: Any, fingerprint: str, batch_id: str, line: OutputLine) -> None:
        if not line.ok or line.result is None:
            error = line.error
            self._common(row_id, STATUS_ERROR, error.code if error else "no_result",
                         error.message if error else "", batch_id, fingerprint)
            self._empty_result()
            return
        self._common(row_id, STATUS_OK, None, None, batch_id, fingerprint)
        d, result = self.data, line.result
        if isinstance(result, SummarizeResult):
            d["summary"].append(result.summary)
            d["input_chars"].append(result.input_chars)
            d["output_chars"].append(result.output_chars)
        elif isinstance(result, ClassifyResult):
            d["top_label"].append(result.top_label)
            d["scores"].append(msgspec.json.encode(result.scores).decode())
            d["reasoning"].append(result.reasoning)
            for label, name in self.columns.label_columns.items():
                d[name].append(result.scores.get(label))
        elif isinstance(result, ExtractResult):
            d["entities"].append(msgspec.json.encode(
                [{"type": e.type, "text": e.text, "confidence": e.confidence, "start": e.start, "end": e.end}
                 for e in result.entities]).decode())
            if self.columns.entity_columns:
                grouped = result.by_type()
                for label, name in self.columns.entity_columns.items():
                    values = grouped.get(label)
                    if not values:
                        d[name].append(None)
                    elif self.columns.entity_mode == "first":
                        d[name].append(values[0])
                    else:
                        d[name].append(msgspec.json.encode(values).decode())

    def add_missing(self, row_id: Any, fingerprint: str, batch_id: str, code: str, message: str) -> None:
        self._common(row_id, STATUS_MISSING, code, message, batch_id, fingerprint)
        self._empty_result()

    def to_record_batch(self) -> pa.RecordBatch:
        return pa.record_batch([pa.array(self.data[f.name], f.type) for f in self.columns.schema],
                               schema=self.columns.schema)
