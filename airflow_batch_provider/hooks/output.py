"""Turns the byte stream of ``GET /v1/batches/{id}/output`` into ``OutputLine`` objects.

No I/O here, so the sync and async hooks read output the same way. When a stream breaks and is
requested again, the lines already handed out are skipped (by count: the server sends a batch's
output in a stable order), so a retry never yields a line twice.
"""

from __future__ import annotations

import msgspec

from airflow_batch_provider.protocol import ItemError, LineSplitter, OutputLine, UnexpectedResponseError
from airflow_batch_provider.protocol.fast_results import decode_output_line


class OutputReader:
    def __init__(self, expected_model: str | None = None) -> None:
        self.expected_model = expected_model
        self.yielded = 0
        self._skip = 0
        self._splitter = LineSplitter()

    def restart(self) -> None:
        """The stream broke: the next one starts from the top, and we skip what was yielded."""
        self._skip = self.yielded
        self._splitter = LineSplitter()

    def feed(self, chunk: bytes) -> list[OutputLine]:
        return self._parse(self._splitter.feed(chunk))

    def close(self) -> list[OutputLine]:
        return self._parse(self._splitter.close())

    def _parse(self, raw_lines: list[bytes]) -> list[OutputLine]:
        parsed = []
        for raw in raw_lines:
            if not raw.strip():
                continue  # blank lines may occur and are skipped
            if self._skip:
                self._skip -= 1
                continue
            try:
                line = decode_output_line(raw, self.expected_model)
            except (UnexpectedResponseError, msgspec.DecodeError) as exc:
                # Malformed, or without an id: it cannot be matched to a row, and one odd line must
                # not stop the others. The loader counts it as unattributable.
                line = OutputLine("", self.expected_model, None, ItemError("no_custom_id", str(exc)[:300]))
            parsed.append(line)
            self.yielded += 1
        return parsed
