"""JSONL without I/O: split a byte stream into lines, decode lines.

Every transport (the sync hook, the async hook, the emulator reading a request body) feeds bytes in
and gets lines or objects out, so line splitting and error reporting behave the same everywhere.
"""

from __future__ import annotations

from typing import Any

import msgspec

from airflow_batch_provider.protocol.errors import MalformedLineError

_decode = msgspec.json.decode


class LineSplitter:
    """Feed it byte chunks of any size; it hands back complete lines (without the newline).

    Only the unfinished tail of the stream is buffered, so memory is bounded by the longest line.
    """

    def __init__(self) -> None:
        self._tail = b""

    def feed(self, chunk: bytes) -> list[bytes]:
        if not chunk:
            return []
        data = self._tail + chunk
        lines = data.split(b"\n")
        self._tail = lines.pop()
        return lines

    def close(self) -> list[bytes]:
        """The last line when the stream did not end with a newline."""
        tail, self._tail = self._tail, b""
        return [tail] if tail else []


class LineDecoder:
    """Decodes lines one by one, counting them so errors can name the line number.

    Blank lines (whitespace only, ``\\r\\n`` endings included) are skipped but counted.
    """

    def __init__(self) -> None:
        self.line_number = 0

    def decode(self, line: bytes) -> dict[str, Any] | None:
        """The JSON object on this line, or None for a blank line."""
        self.line_number += 1
        if not line.strip():
            return None
        try:
            obj = _decode(line)
        except (msgspec.DecodeError, UnicodeDecodeError, RecursionError, ValueError) as exc:
            # Whatever the bytes (invalid UTF-8, nesting too deep), the error names the line.
            raise MalformedLineError(self.line_number, f"{type(exc).__name__}: {str(exc)[:200]}") from None
        if not isinstance(obj, dict):
            raise MalformedLineError(self.line_number, f"expected an object, got {type(obj).__name__}")
        return obj

