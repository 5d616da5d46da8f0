"""What a ``batch_api`` connection says, read once and typed, for both hooks.

URI-style connections give extras as strings, JSON ones as typed values; both are accepted.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from typing import Any

from airflow_batch_provider.hooks.errors import (
    MIN_SECRET,
    InvalidApiKeyError as InvalidApiKeyError,
    MissingApiKeyError as MissingApiKeyError,
    safe_url,
    url_secrets,
)
from airflow_batch_provider.hooks.transport import TransportSettings
from airflow_batch_provider.protocol.output import DEFAULT_MAX_OUTPUT_LINE_BYTES

DEFAULT_BASE_URL = "https://api.scaledown.xyz"
API_KEY_ENV = "SCALEDOWN_API_KEY"


# Printable ASCII without spaces: what an x-api-key header value can carry unchanged.
_HEADER_SAFE = re.compile(r"[!-~]+")


# Extras whose names say they hold a credential (HttpHook sends unknown extras as headers).
_SECRET_NAME = re.compile(r"(?i)secret|token|passw|pwd|key|auth|credential|cookie|signature|session")


def _mask(api_key: str, secrets: tuple[str, ...]) -> None:
    """Register the connection's credentials with Airflow's secrets masker. Airflow masks the
    password and extras it knows by name, but not a key taken from ``SCALEDOWN_API_KEY`` or stripped
    of whitespace, nor userinfo or a query token in the host."""
    from airflow.sdk.log import mask_secret

    mask_secret(api_key)
    for secret in secrets:
        if secret != api_key and len(secret) >= MIN_SECRET:  # the masker skips shorter ones, warning each time
            mask_secret(secret)


def _secret_extras(extra: Any, secret_name: bool = False) -> Iterator[str]:
    """Values of extras named like credentials, at any depth (``{"headers": {"X-Token": ...}}``)."""
    if isinstance(extra, dict):
        for name, value in extra.items():
            yield from _secret_extras(value, secret_name or bool(_SECRET_NAME.search(str(name))))
    elif isinstance(extra, (list, tuple)):
        for value in extra:
            yield from _secret_extras(value, secret_name)
    elif secret_name and isinstance(extra, str) and extra:
        yield extra


@dataclass(frozen=True)
class BatchLimits:
    """How large one batch may be: decided once per job (the operator's arguments over the
    connection's, :meth:`ApiSettings.batch_limits`) and passed down. The spool cuts chunks by it, the
    job refuses a row that cannot fit before paying, and the hook checks each batch against the same
    value as a last guard."""
    max_items: int
    max_bytes: int

    def refusal(self, items: int, size: int) -> str | None:
        """Why a batch of ``items`` requests and ``size`` bytes may not be sent; None when it fits."""
        if items <= self.max_items and size <= self.max_bytes:
            return None
        return (f"the batch has {items} requests / {size} bytes; at most {self.max_items} requests and "
                f"{self.max_bytes} bytes per batch are allowed (max_items_per_batch / max_bytes_per_batch)")


@dataclass(frozen=True)
class ApiSettings:
    """What a ``batch_api`` connection says: where the API is, its key, and how to talk to it."""
    base_url: str
    api_key: str
    connect_timeout: float = 10.0
    read_timeout: float = 120.0
    max_items_per_batch: int = 50         # the newest documented limit (v2)
    max_bytes_per_batch: int = 50 * 1024 * 1024
    retry_max_attempts: int = 6
    retry_initial_wait: float = 1.0
    retry_max_wait: float = 60.0
    retry_total_timeout: float = 600.0
    retry_ambiguous_submits: bool = False
    # The realtime helpers call /extract, /summarization/abstractive and /classify, the API's older
    # shape, instead of /v1/chat/completions and /v1/scaledown (protocol/realtime.py).
    legacy_realtime_paths: bool = False
    max_output_line_bytes: int = DEFAULT_MAX_OUTPUT_LINE_BYTES  # longer output lines are dropped and counted
    # A wait's status requests: the rate it starts at, and the most it may grow to (job/budget.py).
    requests_per_minute: float = 600.0
    max_requests_per_minute: float = float("inf")
    # Every credential the connection holds (key, host userinfo and query, secret-named extras):
    # what :func:`~airflow_batch_provider.hooks.errors.redact` removes from answer bodies.
    secrets: tuple[str, ...] = field(default=(), repr=False, compare=False)
    # CA bundle, client certificate, proxy: the connection's transport extras and the environment.
    transport: TransportSettings = field(default_factory=lambda: TransportSettings.from_extra({}), repr=False,
                                         compare=False)

    def __repr__(self) -> str:  # no credential may reach a log line
        return f"ApiSettings(base_url={self.shown_url!r}, api_key='***')"

    @property
    def shown_url(self) -> str:
        """The base URL as messages and logs show it: without userinfo, query or fragment."""
        return safe_url(self.base_url)

    def batch_limits(self, max_items: int | None = None, max_bytes: int | None = None) -> BatchLimits:
        """The batch limits of a job: those given, else the connection's."""
        return BatchLimits(max_items or self.max_items_per_batch, max_bytes or self.max_bytes_per_batch)

    @classmethod
    def extra_fields(cls) -> tuple[str, ...]:
        """The settings a connection's extras may set (the form's fields too)."""
        return tuple(f.name for f in fields(cls) if f.name not in ("base_url", "api_key", "secrets", "transport"))

    @staticmethod
    def base_url_of(conn: Any) -> str:
        """The API's base URL: https unless the connection names another scheme (the key must not
        travel in clear by default)."""
        host = (conn.host or DEFAULT_BASE_URL).rstrip("/")
        if "://" not in host:
            host = f"{conn.schema or 'https'}://{host}"
        return f"{host}:{conn.port}" if conn.port else host

    @classmethod
    def from_connection(cls, conn: Any) -> ApiSettings:
        """The settings of an Airflow connection; a missing or unusable key, or a bad extra, is refused."""
        host = cls.base_url_of(conn)
        api_key = (conn.password or os.environ.get(API_KEY_ENV) or "").strip()
        if not api_key:
            raise MissingApiKeyError(
                f"no API key: set the password (API Key) of connection {conn.conn_id!r} "
                f"(e.g. `airflow connections add {conn.conn_id} --conn-type batch_api "
                f"--conn-password <key>`) or the environment variable {API_KEY_ENV}")
        if not _HEADER_SAFE.fullmatch(api_key):  # never echo it: requests would, in InvalidHeader
            raise InvalidApiKeyError(
                f"the API key of connection {conn.conn_id!r} (or {API_KEY_ENV}) holds characters an HTTP "
                "header cannot carry (whitespace, control or non-ASCII characters inside it); paste it again")
        extra = conn.extra_dejson or {}
        transport = TransportSettings.from_extra(extra)
        secrets = tuple(sorted({api_key, *url_secrets(host), *_secret_extras(extra), *transport.secrets()}))
        _mask(api_key, secrets)
        values: dict[str, Any] = {}
        for name in cls.extra_fields():
            # A form's empty field, or "none"/"null" typed into a URI, leave the setting at its default.
            given = extra.get(name)
            if not (given in (None, "") or str(given).strip().lower() in ("none", "null")):
                values[name] = _coerce(name, given, type(getattr(cls, name)))
        return cls(base_url=host, api_key=api_key, secrets=secrets, transport=transport, **values)


def _coerce(name: str, value: Any, kind: type) -> Any:
    try:
        if kind is bool:
            if isinstance(value, str):
                if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError(value)
                return value.lower() in ("true", "1", "yes")
            return bool(value)
        coerced = kind(value)
    except (TypeError, ValueError):
        raise ValueError(f"connection extra {name!r} must be a {kind.__name__}, got {value!r}") from None
    if coerced <= 0 or coerced != coerced or (coerced == float("inf") and name != "max_requests_per_minute"):
        raise ValueError(f"connection extra {name!r} must be a finite number > 0, got {value!r}")
    return coerced
