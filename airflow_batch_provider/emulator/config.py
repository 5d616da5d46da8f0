"""Settings of one emulator instance (the CLI flags, also usable in-process)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

# Statuses answered before the app sees the request (nothing is created), in the API's error shape
# {"detail": ...}; the refusals and redirects let a test meet every status the hooks' retry rule
# knows. The API's own 503 ("batch router is not configured") comes from EmulatorConfig(router=False).
ERROR_KINDS = ("301", "302", "303", "307", "308", "400", "401", "403", "404", "409", "413", "422",
               "429", "500", "502", "503", "504")
FAULT_KINDS = (*ERROR_KINDS, "reset", "reset_after", "slow")


@dataclass
class FaultSettings:
    """Faults injected into API calls (not into ``/_emulator/*`` control routes).

    ``rate`` is the chance per request; ``kinds`` are drawn uniformly. ``reset`` drops the connection
    before the request is handled (nothing happened); ``reset_after`` handles it, then drops the
    connection before the answer arrives (a submitted batch exists although the client saw an error).
    """

    rate: float = 0.0
    kinds: tuple[str, ...] = ("429", "500", "502", "503", "504", "reset", "slow")
    retry_after: float = 1.0
    slow_seconds: float = 2.0
    routes: tuple[str, ...] = ("submit", "status", "output", "realtime")
    seed: int | None = None
    skip_first: int = 0  # let this many requests per route through before faults start
    max_faults: int | None = None  # inject at most this many faults in all, then none

    def __post_init__(self) -> None:
        _check_types(self, {"rate": (int, float), "retry_after": (int, float), "slow_seconds": (int, float),
                            "skip_first": (int,), "seed": (int, type(None)), "max_faults": (int, type(None))})
        for name in ("kinds", "routes"):
            value = getattr(self, name)
            if isinstance(value, str) or not all(isinstance(v, str) for v in value):
                raise ValueError(f"{name} must be a list of strings, got {value!r}")
        if self.retry_after < 0 or self.slow_seconds < 0 or self.skip_first < 0 or (self.max_faults or 0) < 0:
            raise ValueError("retry_after, slow_seconds, skip_first and max_faults must be >= 0")
        unknown = set(self.kinds) - set(FAULT_KINDS)
        if unknown:
            raise ValueError(f"unknown fault kinds {sorted(unknown)}; choose from {', '.join(FAULT_KINDS)}")
        if not 0.0 <= self.rate <= 1.0:
            raise ValueError(f"fault rate must be within [0, 1], got {self.rate}")
        self.kinds = tuple(self.kinds)
        self.routes = tuple(self.routes)


def _check_types(settings: object, expected: dict[str, tuple[type, ...]]) -> None:
    """Settings arrive as JSON from the control routes: a wrong type is a 422, never a crash later."""
    for name, types in expected.items():
        value = getattr(settings, name)
        if isinstance(value, bool) or not isinstance(value, types):
            raise ValueError(f"{name} must be {' or '.join(t.__name__ for t in types)}, got {value!r}")


@dataclass
class EmulatorConfig:
    """How the emulator behaves: key, speed, API version, item failures, limits."""
    api_key: str
    data_dir: Path | None = None
    api_version: int = 1
    router: bool = True
    items_per_second: float | None = None
    start_delay: float = 0.0
    item_failure_rate: float = 0.0
    batch_failure_rate: float = 0.0
    max_batch_items: int | None = None
    output_drop_rate: float = 0.0       # output lines left out (their rows come back "missing")
    output_duplicate_rate: float = 0.0  # output lines sent twice
    max_body_bytes: int = 64 * 1024 * 1024  # larger request bodies are refused with 413
    latency: float = 0.0          # seconds added before every API answer (a real network's round trip)
    latency_jitter: float = 0.0   # plus up to this many seconds, drawn uniformly per request
    ignore_idempotency_key: bool = False  # a server that does not honour Idempotency-Key
    rate_limit_per_minute: float | None = None  # API requests a minute beyond which the answer is 429
    faults: FaultSettings = field(default_factory=FaultSettings)

    def __post_init__(self) -> None:
        if self.latency < 0 or self.latency_jitter < 0:
            raise ValueError("latency and latency_jitter must be >= 0")
        if self.api_version not in (1, 2):
            raise ValueError(f"api_version must be 1 or 2, got {self.api_version}")
        if self.max_batch_items is None and self.api_version == 2:
            self.max_batch_items = 50
