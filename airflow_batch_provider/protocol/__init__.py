"""The ScaleDown Batch API wire contract: pure Python, no I/O, no Airflow.

The sync hook, the async hook and the emulator all drive these types and functions, so the client
and the server cannot disagree about what a request, a status or an output line is.
"""

from airflow_batch_provider.protocol.errors import (
    InvalidRequestError,
    MalformedLineError,
    ProtocolError,
    UnexpectedResponseError,
)
from airflow_batch_provider.protocol.jsonl import (
    LineDecoder,
    LineSplitter,
)
from airflow_batch_provider.protocol.requests import (
    CHAT_COMPLETIONS_URL,
    MODELS,
    Classify,
    Extract,
    Label,
    LineEncoder,
    Request,
    Summarize,
    request_from_body,
)
from airflow_batch_provider.protocol.results import (
    ClassifyResult,
    Entity,
    ExtractResult,
    ItemError,
    LabelScore,
    OutputLine,
    Result,
    SummarizeResult,
    decode_output_line,
    parse_output_line,
)
from airflow_batch_provider.protocol.status import BATCHES_URL, BatchState, BatchStatus

__all__ = [
    "BATCHES_URL", "CHAT_COMPLETIONS_URL", "MODELS", "BatchState", "BatchStatus", "Classify", "ClassifyResult",
    "Entity", "Extract", "ExtractResult", "InvalidRequestError", "ItemError", "Label", "LabelScore",
    "LineDecoder", "LineEncoder", "LineSplitter", "MalformedLineError", "OutputLine",
    "ProtocolError", "Request", "Result", "Summarize", "SummarizeResult", "UnexpectedResponseError",
    "decode_output_line", "parse_output_line",
    "request_from_body",
]
