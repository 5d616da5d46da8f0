"""Turns the byte stream of ``GET /v1/batches/{id}/output`` into ``OutputLine`` objects.

No I/O here: the hook feeds it the bytes as they arrive. When a stream breaks and is
requested again, the lines already handed out are skipped by their ``custom_id`` (an unattributable
line by its bytes), not by count, so a server that sends the lines in another order the second time
still yields each one once.

A line that cannot be parsed — malformed JSON, invalid UTF-8, nesting too deep, no id — becomes an
unattributable line (``custom_id == ""``), which the loader counts; it never stops the others. So does
a line longer than ``max_line_bytes``: it is dropped as it streams (never held whole), so a broken or
hostile server can neither stall the load nor fill its memory.
"""

from __future__ import annotations

import hashlib

from airflow_batch_provider.protocol.jsonl import LineSplitter
from airflow_batch_provider.protocol.results import ItemError, OutputLine, decode_output_line

# A result line is a few KB; 16 MiB leaves room for the longest text the API summarises or extracts
# from, and bounds what one download thread holds (connection extra ``max_output_line_bytes``).
DEFAULT_MAX_OUTPUT_LINE_BYTES = 16 * 1024 * 1024


class OutputReader:
    """Turns a batch's output, streamed in chunks of any size, into output lines, each once."""
    def __init__(self, expected_model: str | None = None,
                 max_line_bytes: int = DEFAULT_MAX_OUTPUT_LINE_BYTES) -> None:
        self.expected_model = expected_model
        self.max_line_bytes = max_line_bytes
        self.yielded = 0
        self._seen: set[str] = set()
        self._skipping = False
        self._splitter = LineSplitter(max_line_bytes)

    def restart(self) -> None:
        """The stream broke: the next one starts from the top, and what was yielded is skipped."""
        self._skipping = True
        self._splitter = LineSplitter(self.max_line_bytes)

    def feed(self, chunk: bytes) -> list[OutputLine]:
        """The output lines completed by this chunk of bytes."""
        return self._parse(self._splitter.feed(chunk)) + self._too_long()

    def close(self) -> list[OutputLine]:
        """The lines left when the stream ends: one without a final newline, and those dropped as too long."""
        return self._parse(self._splitter.close()) + self._too_long()

    def _too_long(self) -> list[OutputLine]:
        """Lines dropped for their length, as unattributable lines (known again by their digest)."""
        lines = []
        for dropped in self._splitter.take_too_long():
            key = "\0long:" + dropped.digest
            if key not in self._seen:
                self._seen.add(key)
                lines.append(OutputLine("", self.expected_model, None, ItemError(
                    "line_too_long", f"an output line of {dropped.size} bytes, more than max_output_line_bytes="
                                     f"{self.max_line_bytes}; dropped unread")))
        self.yielded += len(lines)
        return lines

    def _parse(self, raw_lines: list[bytes]) -> list[OutputLine]:
        if not self._skipping:  # the common case: every line is new; remember them for a restart
            raws = [raw for raw in raw_lines if raw and not raw.isspace()]  # blank lines may occur
            parsed = [self._line(raw) for raw in raws]
            self._seen.update([line.custom_id for line in parsed])
            if "" in self._seen:  # unattributable lines are remembered by their bytes
                self._seen.discard("")
                self._seen.update(_bytes_key(raw) for raw, line in zip(raws, parsed, strict=True) if not line.custom_id)
        else:
            parsed = []
            for raw in raw_lines:
                if raw and not raw.isspace():
                    line = self._line(raw)
                    key = line.custom_id or _bytes_key(raw)
                    if key not in self._seen:  # else handed out before the stream broke
                        self._seen.add(key)
                        parsed.append(line)
        self.yielded += len(parsed)
        return parsed

    def _line(self, raw: bytes) -> OutputLine:
        try:
            return decode_output_line(raw, self.expected_model)
        except Exception as exc:  # noqa: BLE001 - whatever the bytes, one odd line must not stop the rest
            return OutputLine("", self.expected_model, None,
                              ItemError("no_custom_id", f"{type(exc).__name__}: {str(exc)[:300]}"))


def _bytes_key(raw: bytes) -> str:
    return "\0" + hashlib.blake2b(raw, digest_size=16).hexdigest()
