"""Request types for the three batch models, their validation, and one request line per item.

Validation happens when a request is built (its parameters) and when a line is built (the item's
``custom_id`` and text), so nothing the API would refuse or silently mangle is ever sent.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

import msgspec

from airflow_batch_provider.protocol.errors import InvalidRequestError

CHAT_COMPLETIONS_URL = "/v1/chat/completions"
MODELS = ("extract", "summarize", "classify")

_encode = msgspec.json.encode


def _require_text(value: Any, what: str, *, item: str | None = None) -> None:
    if not isinstance(value, str):
        raise InvalidRequestError(f"{what} must be a string, got {type(value).__name__}", item=item)
    if not value.strip():
        raise InvalidRequestError(f"{what} must not be empty", item=item)


def _optional_text(value: Any, what: str) -> None:
    if value is not None:
        _require_text(value, what)


@dataclass(frozen=True)
class Label:
    """One classification label: ``rubric`` is a yes/no question; "yes" means the label applies."""

    name: str
    rubric: str

    def __post_init__(self) -> None:
        _require_text(self.name, "label name")
        _require_text(self.rubric, f"rubric of label {self.name!r}")


class _Request:
    """Shared behaviour of the three request types."""

    model: ClassVar[str]

    def params(self) -> dict[str, Any]:
        """The body fields other than ``text``, as sent on the wire (None values left out)."""
        raise NotImplementedError

    __version__: ClassVar[int] = 1  # of serialize()'s shape, which Airflow's XCom stores beside it

    def serialize(self) -> dict[str, Any]:
        """What is asked of every row (model, labels and rubrics, instructions): how Airflow shows a
        request among a task's rendered fields, and how its XCom stores one."""
        return {"model": self.model, **self.params()}

    @staticmethod
    def deserialize(data: dict[str, Any], version: int) -> Request:
        """The request :meth:`serialize` described (Airflow's XCom reads a request back with it)."""
        return request_from_body(data)


@dataclass(frozen=True)
class Extract(_Request):
    """Find entities: ``entities`` maps each entity label to a plain-English description."""

    entities: Mapping[str, str]
    instruction: str | None = None
    model: ClassVar[str] = "extract"

    def __post_init__(self) -> None:
        if not isinstance(self.entities, Mapping) or not self.entities:
            raise InvalidRequestError("entities must be a non-empty mapping of label -> description")
        for label, description in self.entities.items():
            _require_text(label, "entity label")
            _require_text(description, f"description of entity {label!r}")
        _optional_text(self.instruction, "instruction")
        object.__setattr__(self, "entities", dict(self.entities))

    def params(self) -> dict[str, Any]:
        """The body fields other than ``text``: the entities and the instruction."""
        params: dict[str, Any] = {"entities": dict(self.entities)}
        if self.instruction is not None:
            params["instruction"] = self.instruction
        return params


@dataclass(frozen=True)
class Summarize(_Request):
    """Summarise the text; ``instructions`` steer the style (e.g. "Use bullet points.")."""

    instructions: str | None = None
    max_tokens: int | None = None
    model: ClassVar[str] = "summarize"

    def __post_init__(self) -> None:
        _optional_text(self.instructions, "instructions")
        if self.max_tokens is not None:
            if isinstance(self.max_tokens, bool) or not isinstance(self.max_tokens, int):
                raise InvalidRequestError(
                    f"max_tokens must be a positive integer, got {self.max_tokens!r}"
                )
            if self.max_tokens <= 0:
                raise InvalidRequestError(f"max_tokens must be > 0, got {self.max_tokens}")

    def params(self) -> dict[str, Any]:
        """The body fields other than ``text``: the instructions and ``max_tokens``, when given."""
        params: dict[str, Any] = {}
        if self.instructions is not None:
            params["instructions"] = self.instructions
        if self.max_tokens is not None:
            params["max_tokens"] = self.max_tokens
        return params


@dataclass(frozen=True)
class Classify(_Request):
    """Score the text against each label's yes/no rubric."""

    labels: Sequence[Label] = field(default_factory=tuple)
    system_prompt: str | None = None
    model: ClassVar[str] = "classify"

    def __post_init__(self) -> None:
        if isinstance(self.labels, (str, bytes)) or not self.labels:
            raise InvalidRequestError("labels must be a non-empty list of Label(name, rubric)")
        labels = tuple(self.labels)
        for label in labels:
            if not isinstance(label, Label):
                raise InvalidRequestError(
                    f"labels must be Label(name, rubric) objects, got {type(label).__name__}"
                )
        names = [label.name for label in labels]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise InvalidRequestError(f"duplicate label names: {', '.join(duplicates)}")
        _optional_text(self.system_prompt, "system_prompt")
        object.__setattr__(self, "labels", labels)

    def params(self) -> dict[str, Any]:
        """The body fields other than ``text``: the labels with their rubrics, and the system prompt."""
        params: dict[str, Any] = {
            "labels": [{"name": label.name, "rubric": label.rubric} for label in self.labels]
        }
        if self.system_prompt is not None:
            params["system_prompt"] = self.system_prompt
        return params


Request = Extract | Summarize | Classify


def rendered(request: Request, render: Callable[[Any], Any]) -> Request:
    """The request with ``render`` applied to each of its text parameters (instructions, entity
    descriptions, rubrics, the system prompt): how Airflow's templates reach a request."""
    if isinstance(request, Extract):
        return Extract({k: render(v) for k, v in request.entities.items()}, render(request.instruction))
    if isinstance(request, Summarize):
        return replace(request, instructions=render(request.instructions))
    if isinstance(request, Classify):
        return Classify([Label(label.name, render(label.rubric)) for label in request.labels],
                        render(request.system_prompt))
    raise TypeError(f"request must be Extract, Summarize or Classify, got {type(request).__name__}")


def request_from_body(body: Mapping[str, Any]) -> Request:
    """Rebuild (and so validate) a request from a wire ``body``; ``text`` is ignored here."""
    model = body.get("model")
    if model == "extract":
        return Extract(entities=body.get("entities") or {}, instruction=body.get("instruction"))
    if model == "summarize":
        return Summarize(instructions=body.get("instructions"), max_tokens=body.get("max_tokens"))
    if model == "classify":
        raw = body.get("labels")
        if not isinstance(raw, list) or not all(isinstance(item, Mapping) for item in raw):
            raise InvalidRequestError("labels must be a list of {name, rubric} objects")
        return Classify(
            labels=[Label(item.get("name"), item.get("rubric")) for item in raw],
            system_prompt=body.get("system_prompt"),
        )
    raise InvalidRequestError(f"unknown model {model!r}; expected one of {', '.join(MODELS)}")


class LineEncoder:
    """Turns ``(custom_id, text)`` into one JSONL request line (bytes, newline included).

    The request's constant part is encoded once; per item only the id and the text are encoded,
    which keeps this cheap enough for millions of rows. Duplicate ids within one encoder (one
    submission) are refused, as the API's handling of them is undocumented.
    """

    def __init__(self, request: Request) -> None:
        self.request = request
        params = _encode({"model": request.model, **request.params()})
        self._head = b'{"custom_id":'
        self._middle = (
            b',"method":"POST","url":"' + CHAT_COMPLETIONS_URL.encode() + b'","body":'
            + params[:-1] + b',"text":'
        )
        self._seen: set[str] = set()

    def encode(self, custom_id: str, text: Any) -> bytes:
        """One request line (bytes, newline included) for ``text``, named by ``custom_id``."""
        if not isinstance(custom_id, str) or not custom_id:
            raise InvalidRequestError("custom_id must be a non-empty string", item=repr(custom_id))
        _require_text(text, "text", item=custom_id)
        if custom_id in self._seen:
            raise InvalidRequestError("duplicate custom_id in one submission", item=custom_id)
        self._seen.add(custom_id)
        return self._head + _encode(custom_id) + self._middle + _encode(text) + b"}}\n"

    @property
    def parts(self) -> tuple[bytes, bytes, bytes]:
        """A line is ``head + json(custom_id) + middle + json(text) + tail``, for vectorised callers."""
        return self._head, self._middle, b"}}\n"

