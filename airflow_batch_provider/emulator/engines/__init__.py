"""The emulator's built-in engines: deterministic stand-ins for the real models, not ML.

:func:`run` takes one request body and returns the domain result (what the API puts, as a JSON
string, into ``choices[0].message.content``) or raises :class:`ItemFailure` for item-level errors.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from airflow_batch_provider.emulator.engines.classify import classify
from airflow_batch_provider.emulator.engines.extract import extract
from airflow_batch_provider.emulator.engines.summarize import summarize
from airflow_batch_provider.emulator.errors import (
    ItemFailure as ItemFailure,
)
from airflow_batch_provider.protocol import InvalidRequestError, request_from_body


def run(body: Mapping[str, Any], *, entity_spelling: str = "text") -> dict[str, Any]:
    """The result for one request body; item-level problems raise :class:`ItemFailure`."""
    text = body.get("text")
    if not isinstance(text, str) or not text.strip():
        raise ItemFailure("invalid_request", "body.text is required and must be a non-empty string")
    try:
        request_from_body(body)
    except InvalidRequestError as exc:
        raise ItemFailure("invalid_request", str(exc)) from None
    model = body["model"]
    if model == "summarize":
        return summarize(text, body.get("instructions"), body.get("max_tokens"))
    if model == "extract":
        return extract(text, body["entities"], spelling=entity_spelling)
    return classify(text, body["labels"], body.get("system_prompt"))


__all__ = ["ItemFailure", "classify", "extract", "run", "summarize"]
