"""What a load tells the task log once every row has landed: the counts by status with the top error
kinds, and a capped table of failed rows, so a user sees why rows failed without querying the table.

It watches the record batches on their way to the destination (the counts by status are the load's
own): memory holds the counts per error kind and at most the failed rows it shows, whatever the
job's size.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import pyarrow as pa
import pyarrow.compute as pc
from tabulate import tabulate

from airflow_batch_provider.job.reconcile import LoadCounts

SHOWN_FAILED_ROWS = 20  # the default; the load's log_failed_rows
SHOWN_KINDS = 5
MESSAGE_WIDTH = 100  # an error message is cut here in the log; the destination holds it whole


class LoadReport:
    """Counts the rows of each status and error kind, and keeps the first failed rows."""

    def __init__(self, id_column: str, shown_failed_rows: int = SHOWN_FAILED_ROWS) -> None:
        self.id_column = id_column
        self.shown_failed_rows = shown_failed_rows
        self.kinds: Counter[str] = Counter()  # error_code of error and missing rows
        self.failed_rows: list[tuple[object, str, str, str]] = []

    def watch(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        """The same batches, noted on their way."""
        for batch in batches:
            self._note(batch)
            yield batch

    def _note(self, batch: pa.RecordBatch) -> None:
        failed_mask = pc.not_equal(batch.column("status"), "ok")
        if not pc.any(failed_mask).as_py():
            return
        failed = batch.filter(failed_mask)
        for item in pc.value_counts(pc.fill_null(failed.column("error_code"), "(none)")).to_pylist():
            self.kinds[item["values"]] += item["counts"]
        room = self.shown_failed_rows - len(self.failed_rows)
        if room > 0:
            shown = failed.slice(0, room)
            for id_value, row_status, code, message in zip(*(shown.column(name).to_pylist() for name in (
                    self.id_column, "status", "error_code", "error_message")), strict=True):
                self.failed_rows.append((id_value, row_status, code or "", _one_line(message or "")))

    def summary(self, counts: LoadCounts) -> str:
        """A short table: the load's rows per status, and the most frequent error kinds."""
        by_status = {"ok": counts.ok, "error": counts.error, "missing": counts.missing}
        rows = [(status, count, f"{count / counts.rows:.1%}" if counts.rows else "-")
                for status, count in by_status.items()]
        table = tabulate(rows, headers=("status", "rows", "share"), colalign=("left", "right", "right"))
        if not self.kinds:
            return table
        top = ", ".join(f"{kind} {count}" for kind, count in self.kinds.most_common(SHOWN_KINDS))
        more = len(self.kinds) - SHOWN_KINDS
        return f"{table}\ntop error kinds: {top}" + (f" (and {more} more)" if more > 0 else "")

    def failed_table(self, counts: LoadCounts) -> str | None:
        """The first failed rows, or None when every row is ok (or none are to be shown)."""
        if not self.failed_rows:
            return None
        failed = counts.error + counts.missing
        heading = (f"the first {len(self.failed_rows)} of {failed} failed rows" if failed > len(self.failed_rows)
                   else f"the {failed} failed rows")
        table = tabulate(self.failed_rows, headers=(self.id_column, "status", "error_code", "error_message"),
                         disable_numparse=True)
        return f"{heading} (all of them are in the destination, with their status):\n{table}"


def _one_line(message: str) -> str:
    flat = " ".join(message.split())
    return flat if len(flat) <= MESSAGE_WIDTH else flat[:MESSAGE_WIDTH - 1] + "…"
