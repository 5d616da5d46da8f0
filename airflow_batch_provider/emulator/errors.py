"""The emulator's own errors: what it answers with a status code, and an item that fails."""

from __future__ import annotations


class ApiError(Exception):
    """Answered as ``{"detail": ...}`` with its status code."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


class ItemFailure(Exception):
    """An item the engine answers with an error line: its error code and message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
