"""A Parquet file, or a folder of them as Spark and Hive write it, as record batches."""

from __future__ import annotations

from collections.abc import Iterator

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
from airflow.sdk import ObjectStoragePath

from airflow_batch_provider.protocol import InvalidRequestError
from airflow_batch_provider.sources import READ_BATCH_ROWS
from airflow_batch_provider.tabular.columns import require_columns


def parquet_dataset(path: str, conn_id: str | None) -> ds.Dataset:
    """The file, or the directory as Spark and Hive write them (pyarrow.dataset): files and
    folders starting with ``_`` or ``.`` (``_temporary/``, ``_SUCCESS``, ``.crc``) are skipped,
    ``key=value`` folders are read as columns, files in path order."""
    root = ObjectStoragePath(path, conn_id=conn_id)
    if not root.exists():
        raise InvalidRequestError(f"no Parquet file or directory at {path}")
    # pyarrow wraps the fsspec filesystem itself
    dataset = ds.dataset(root.path, filesystem=root.fs, format="parquet", partitioning="hive")
    if not dataset.files:
        raise InvalidRequestError(f"no Parquet files under {path}")
    return dataset

def parquet_batches(path: str, conn_id: str | None, columns: list[str],
                    batch_rows: int = READ_BATCH_ROWS) -> Iterator[pa.RecordBatch]:
    """The ``columns`` of the file or folder at ``path``, a batch at a time."""
    dataset = parquet_dataset(path, conn_id)
    require_columns(path, columns, dataset.schema.names, InvalidRequestError)
    # One batch after another, in file order (use_threads=False): the job's identity covers the order.
    fragments = list(dataset.get_fragments())
    if not all(name in fragment.physical_schema.names for fragment in fragments for name in columns):
        # A column from key=value folders: the dataset's scanner adds it.
        yield from dataset.to_batches(columns=columns, batch_size=batch_rows, use_threads=False)
        return
    # File by file, page by page: the scanner decodes a whole row group before cutting it, and a
    # file written by pandas or pyarrow with their defaults is one row group of up to 1 M rows.
    schema = pa.schema([dataset.schema.field(name) for name in columns])  # one type per column, as the scanner
    for fragment in fragments:
        with dataset.filesystem.open_input_file(fragment.path) as file:
            for batch in pq.ParquetFile(file).iter_batches(batch_size=batch_rows, columns=columns,
                                                           use_threads=False):
                yield batch.cast(schema)
