"""JSONL without I/O: split a byte stream into lines, decode lines.

Every transport (the sync hook, the async hook, the emulator reading a request body) feeds bytes in
and gets lines or objects out, so line splitting and error reporting behave the same everywhere.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import msgspec

from airflow_batch_provider.protocol.errors import MalformedLineError

_decode = msgspec.json.decode


@dataclass(frozen=True)
class TooLongLine:
    """A line longer than the splitter's cap, dropped: its size and a digest of its bytes (so a
    stream read again can tell it from another)."""

    size: int
    digest: str


class LineSplitter:
    """Feed it byte chunks of any size; it hands back complete lines (without the newline).

    Only the unfinished line is buffered, as a list of pieces joined once when its newline comes: the
    cost is linear in the line's length however many chunks it spans (adding each chunk to one
    growing bytes object copied the line again per chunk: 7 s for a 32 MiB line in 64 KiB chunks).
    With ``max_line_bytes`` a longer line is dropped, not buffered: from the chunk that takes it past
    the cap, its bytes are only hashed until its newline, and it is reported by :meth:`take_too_long`
    so the caller can count it. Memory then stays under the cap plus one chunk, whatever a server sends.
    """

    def __init__(self, max_line_bytes: int | None = None) -> None:
        if max_line_bytes is not None and max_line_bytes < 1:
            raise ValueError(f"max_line_bytes must be >= 1, got {max_line_bytes}")
        self.max_line_bytes = max_line_bytes
        self._pieces: list[bytes] = []
        self._buffered = 0
        self._dropping: Any = None  # the hash of the over-long line being skipped, if one is
        self._dropped = 0
        self._too_long: list[TooLongLine] = []

    @property
    def buffered(self) -> int:
        """Bytes held of the unfinished line."""
        return self._buffered

    def feed(self, chunk: bytes) -> list[bytes]:
        """The lines this chunk completes; a partial line waits for the next chunk."""
        if not chunk:
            return []
        parts = chunk.split(b"\n")
        tail = parts.pop()
        lines: list[bytes] = []
        if parts:
            first = self._end(parts[0])
            if first is not None:
                lines.append(first)
            rest = parts[1:]
            cap = self.max_line_bytes
            if cap is not None and rest and max(map(len, rest)) > cap:  # rare: check them one by one
                lines += [line for line in map(self._end, rest) if line is not None]
            else:
                lines += rest
        self._begin(tail)
        return lines

    def close(self) -> list[bytes]:
        """The last line when the stream did not end with a newline."""
        if self._dropping is not None or self._pieces:
            last = self._end(b"")
            return [last] if last else []
        return []

    def take_too_long(self) -> list[TooLongLine]:
        """The lines dropped for their length since the last call."""
        dropped, self._too_long = self._too_long, []
        return dropped

    def _end(self, piece: bytes) -> bytes | None:
        """The unfinished line, ended by ``piece``; None when it is too long (and so dropped)."""
        cap = self.max_line_bytes
        if self._dropping is None and (cap is None or self._buffered + len(piece) <= cap):
            if not self._pieces:
                return piece
            line = b"".join([*self._pieces, piece])
            self._pieces, self._buffered = [], 0
            return line
        self._drop(piece)
        self._too_long.append(TooLongLine(self._dropped, self._dropping.hexdigest()))
        self._dropping, self._dropped = None, 0
        return None

    def _begin(self, piece: bytes) -> None:
        """Keep ``piece``, the start of an unfinished line, unless the line is already too long."""
        if self._dropping is not None:
            self._drop(piece)
            return
        if not piece:
            return
        self._pieces.append(piece)
        self._buffered += len(piece)
        if self.max_line_bytes is not None and self._buffered > self.max_line_bytes:
            self._drop(b"")

    def _drop(self, piece: bytes) -> None:
        """Hash ``piece`` (and what was kept of its line) instead of keeping it."""
        if self._dropping is None:
            self._dropping = hashlib.blake2b(digest_size=16)
            for kept in self._pieces:
                self._dropping.update(kept)
            self._dropped, self._pieces, self._buffered = self._buffered, [], 0
        self._dropping.update(piece)
        self._dropped += len(piece)


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

