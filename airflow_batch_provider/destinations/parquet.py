"""Parquet: written to a local temporary file as the rows stream in, then moved into place, so the
destination holds either the previous file or the complete new one, never a partial one."""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Iterable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from airflow.sdk import ObjectStoragePath

from airflow_batch_provider.tabular.record_batches import coalesced


def write_parquet(batches: Iterable[pa.RecordBatch], schema: pa.Schema, destination: ObjectStoragePath) -> int:
    """The rows written locally, then copied and renamed into place: the file is whole or not there."""
    rows = 0
    with tempfile.TemporaryDirectory(prefix="scaledown-parquet-") as tmp:
        local = Path(tmp) / "results.parquet"
        with pq.ParquetWriter(local, schema) as writer:
            for batch in coalesced(batches):  # one row group per ~32k rows, not per API batch
                writer.write_batch(batch)
                rows += batch.num_rows
        destination.parent.mkdir(parents=True, exist_ok=True)
        partial = destination.parent / f".{destination.name}.{uuid.uuid4().hex[:8]}.partial"
        with open(local, "rb") as source, partial.open("wb") as target:
            shutil.copyfileobj(source, target, 1 << 20)
        partial.rename(destination)
    return rows
