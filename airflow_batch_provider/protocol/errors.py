"""Errors raised by the wire contract itself (no HTTP involved)."""

from __future__ import annotations


class ProtocolError(ValueError):
    """Something does not fit the ScaleDown Batch API contract."""


class InvalidRequestError(ProtocolError):
    """A request would be refused (or silently mangled) by the API; raised before anything is sent.

    ``item`` names the offending request (its ``custom_id`` or the request parameter) so that the
    message can point the user at the row to fix.
    """

    def __init__(self, message: str, *, item: str | None = None) -> None:
        super().__init__(f"{item}: {message}" if item is not None else message)


class MalformedLineError(ProtocolError):
    """A JSONL line is not a JSON object; ``line_number`` is 1-based and counts blank lines too."""

    def __init__(self, line_number: int, detail: str) -> None:
        super().__init__(f"line {line_number}: malformed JSON ({detail})")
        self.line_number = line_number


class UnexpectedResponseError(ProtocolError):
    """The server answered with a body that matches neither documented shape."""
