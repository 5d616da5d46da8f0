"""A fast path for output lines: msgspec decodes straight into typed structs.

Most lines have the documented shape; decoding them into structs is several times cheaper than
building dicts and walking them. Any line the structs cannot take (other spellings, odd types) falls
back to :func:`~airflow_batch_provider.protocol.results.parse_output_line`, which reads tolerantly,
so the fast path changes speed, never results.
"""

from __future__ import annotations

from typing import Any, Union

import msgspec

from airflow_batch_provider.protocol.results import (
    ClassifyResult,
    Entity,
    ExtractResult,
    OutputLine,
    SummarizeResult,
    parse_output_line,
)


class _Message(msgspec.Struct):
    content: str


class _Choice(msgspec.Struct):
    message: _Message


class _Body(msgspec.Struct):
    choices: list[_Choice]
    model: Union[str, None] = None


class _Response(msgspec.Struct):
    body: _Body
    status_code: int = 200


class _Line(msgspec.Struct):
    custom_id: str
    response: Union[_Response, None] = None
    error: Union[dict, None] = None


class _Entity(msgspec.Struct):
    type: str
    text: Union[str, None] = None
    value: Union[str, None] = None
    confidence: Union[float, None] = None
    score: Union[float, None] = None
    start: Union[int, None] = None
    end: Union[int, None] = None
    context: Union[str, None] = None


class _Extraction(msgspec.Struct):
    entities: list[_Entity] = []


_LINE = msgspec.json.Decoder(_Line)
# Summaries and classifications decode straight into the public result types.
_CONTENT = {"summarize": msgspec.json.Decoder(SummarizeResult), "classify": msgspec.json.Decoder(ClassifyResult),
            "extract": msgspec.json.Decoder(_Extraction)}
_ANY = msgspec.json.Decoder()


def _result(model: str, content: Any):
    if model != "extract":
        return content
    entities = []
    for e in content.entities:
        text = e.text if e.text is not None else e.value
        if text is None:
            raise ValueError("entity without text")
        confidence = e.confidence if e.confidence is not None else e.score
        entities.append(Entity(e.type, text, confidence, e.start, e.end, e.context))
    return ExtractResult(tuple(entities))


def decode_output_line(raw: bytes, expected_model: str | None = None) -> OutputLine:
    """One output line (bytes) as an :class:`OutputLine`; malformed JSON raises ``msgspec.DecodeError``,
    a line without ``custom_id`` raises ``UnexpectedResponseError`` (as the tolerant path does)."""
    try:
        line = _LINE.decode(raw)
        if line.error:
            raise ValueError("item error: the tolerant path words it")
        response = line.response
        model = response.body.model or expected_model
        if response.status_code != 200 or model not in _CONTENT:
            raise ValueError("not the common case")
        content = _CONTENT[model].decode(response.body.choices[0].message.content)
        return OutputLine(line.custom_id, model, _result(model, content), None)
    except (msgspec.ValidationError, ValueError, IndexError, AttributeError):
        pass
    except msgspec.DecodeError:
        raise
    return parse_output_line(_ANY.decode(raw), expected_model)

