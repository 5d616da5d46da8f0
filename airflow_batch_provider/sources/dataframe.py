"""A pandas DataFrame as record batches, and what the UI shows of one."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pyarrow as pa

from airflow_batch_provider.protocol import InvalidRequestError
from airflow_batch_provider.sources import READ_BATCH_ROWS
from airflow_batch_provider.tabular.columns import require_columns

if TYPE_CHECKING:
    import pandas as pd


# What pyarrow raises when a pandas column has no Arrow type: values of several types (ArrowInvalid,
# ArrowTypeError), an int beyond 64 bits (OverflowError), a str holding a lone surrogate
# (UnicodeEncodeError). Input that will never convert, so a refusal, not an error Airflow retries.
_UNCONVERTIBLE = (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError, UnicodeEncodeError)


def frame_batches(frame: pd.DataFrame, columns: list[str],
                  batch_rows: int = READ_BATCH_ROWS) -> Iterator[pa.RecordBatch]:
    """The DataFrame's ``columns`` as record batches; a column Arrow cannot hold is refused, naming it."""
    require_columns("the DataFrame", columns, frame.columns, InvalidRequestError)
    try:
        table = pa.Table.from_pandas(frame[columns], preserve_index=False)
    except _UNCONVERTIBLE as exc:
        raise _unconvertible(frame, columns, exc) from exc
    yield from table.to_batches(max_chunksize=batch_rows)


def _unconvertible(frame: pd.DataFrame, columns: list[str], exc: Exception) -> InvalidRequestError:
    """Which column cannot become Arrow, the first value at fault when one is, and what to do."""
    for column in columns:
        try:
            pa.Array.from_pandas(frame[column])
            continue
        except _UNCONVERTIBLE as found:
            exc = found
        series = frame[column]
        for position, value in enumerate(series):
            if isinstance(value, str) and not value.isascii():
                try:
                    value.encode()
                except UnicodeEncodeError:
                    return InvalidRequestError(
                        f"column {column!r} of the DataFrame holds a string with a lone surrogate at row "
                        f"{position} (index {series.index[position]!r}), which is not text any database stores; "
                        "re-encode it first, e.g. .str.encode('utf-8', 'replace').str.decode('utf-8')")
            elif isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**63:
                return InvalidRequestError(
                    f"column {column!r} of the DataFrame holds an integer outside the signed 64-bit range, the "
                    f"largest SQL databases store, at row {position} (index {series.index[position]!r}); "
                    "ids must fit it, or be strings (.astype(str))")
        kinds = sorted({type(value).__name__ for value in series if value is not None})
        return InvalidRequestError(
            f"column {column!r} of the DataFrame cannot be converted to Arrow ({type(exc).__name__}: "
            f"{str(exc)[:200]}); it holds values of the types {', '.join(kinds)}. Give it one type: ids as "
            "integers or as strings (.astype(str)), text as strings")
    return InvalidRequestError(f"the DataFrame cannot be converted to Arrow ({type(exc).__name__}: {str(exc)[:200]})")


class FrameSummary:
    """A rendered DataFrame that shows only its shape and columns: Airflow stores a rendered field's
    ``str()`` in its metadata database and shows it in the UI, and row texts may be personal data."""

    def __init__(self, frame: pd.DataFrame) -> None:
        self.frame = frame

    def __str__(self) -> str:
        columns = ", ".join(map(str, self.frame.columns[:20])) + (", …" if len(self.frame.columns) > 20 else "")
        return f"DataFrame: {len(self.frame)} rows × {len(self.frame.columns)} columns ({columns})"

    __repr__ = __str__
