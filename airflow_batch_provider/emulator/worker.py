"""The background processor: moves batches queued -> processing -> completed at a set rate.

It works the oldest ready batch a slice at a time and commits each slice with its results, so a
restarted emulator carries on where it stopped and loses nothing. ``items_per_second`` is the
capacity of the whole emulator (like a real service's), not per batch.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
import uuid

import msgspec

from airflow_batch_provider.emulator import engines
from airflow_batch_provider.emulator.config import EmulatorConfig
from airflow_batch_provider.emulator.store import BatchStore
from airflow_batch_provider.protocol.results import completion_body

log = logging.getLogger(__name__)
SLICE = 500
IDLE_SLEEP = 0.02


def chance(key: str, salt: str) -> float:
    """A deterministic number in [0, 1) per key, so injected failures repeat run after run."""
    digest = hashlib.blake2b(f"{salt}:{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def output_line(custom_id: str, model: str | None, content: dict | None, error: dict | None) -> bytes:
    """One output line as the API writes it: a ChatCompletion response or an error."""
    if error is not None:
        return msgspec.json.encode({"custom_id": custom_id, "response": None, "error": error}) + b"\n"
    body = completion_body(model, content, f"chatcmpl-{uuid.uuid4().hex[:24]}")
    return msgspec.json.encode(
        {"custom_id": custom_id, "response": {"status_code": 200, "body": body}, "error": None}
    ) + b"\n"


class Processor:
    """Works through queued batches on a thread, at the configured speed."""
    def __init__(self, store: BatchStore, config: EmulatorConfig) -> None:
        self.store = store
        self.config = config
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._tokens = 0.0
        self._last_refill = time.monotonic()
        self.entity_spelling = "value" if config.api_version == 1 else "text"

    def start(self) -> None:
        """Start processing on a thread."""
        self._thread = threading.Thread(target=self._run, name="emulator-processor", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop processing and close the store."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.store.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                worked = self.step()
            except Exception:  # keep serving; a broken slice is logged and retried
                log.exception("emulator processor step failed")
                worked = False
            if not worked:
                self._stop.wait(IDLE_SLEEP)
        self.store.close()

    def _allowance(self) -> int:
        rate = self.config.items_per_second
        if not rate:
            return SLICE
        now = time.monotonic()
        self._tokens = min(self._tokens + (now - self._last_refill) * rate, max(rate, 1.0))
        self._last_refill = now
        return min(SLICE, int(self._tokens))

    def step(self) -> bool:
        """Process one slice of the oldest ready batch; False when there was nothing to do."""
        batch = self.store.next_active(time.time() - self.config.start_delay)
        if batch is None:
            return False
        allowance = self._allowance()
        if allowance < 1:
            return False
        if batch.state == "queued" and chance(batch.id, "batch") < self.config.batch_failure_rate:
            self.store.set_state(batch.id, "failed")
            return True
        items = self.store.pending_items(batch.id, batch.next_idx, allowance)
        if not items:  # an empty remainder: nothing left to do
            self.store.set_state(batch.id, "completed")
            return True
        outputs, completed, failed = [], 0, 0
        for idx, line in items:
            request = msgspec.json.decode(line)
            custom_id = request["custom_id"]
            body = request.get("body") or {}
            content, error = None, None
            if chance(custom_id, "item") < self.config.item_failure_rate:
                error = {"code": "model_error", "message": "the model could not process this item"}
            else:
                try:
                    content = engines.run(body, entity_spelling=self.entity_spelling)
                except engines.ItemFailure as exc:
                    error = {"code": exc.code, "message": exc.message}
            completed += error is None
            failed += error is not None
            outputs.append((idx, output_line(custom_id, body.get("model"), content, error)))
        self._tokens -= len(items)
        self.store.record_outputs(batch, outputs, completed, failed)
        return True
