"""One hook per thread, for the job's pools of worker threads."""

from __future__ import annotations

import threading
from collections.abc import Callable

from airflow_batch_provider.hooks.batch_api import BatchApiHook


class ThreadHooks:
    """One :class:`BatchApiHook` (and so one pooled session) per thread, for pools of worker
    threads: a ``requests.Session`` is not meant to be shared between threads."""

    def __init__(self, batch_api_conn_id: str, on_throttled: Callable[[float], None] | None = None, *,
                 one_attempt: bool = False) -> None:
        self.batch_api_conn_id = batch_api_conn_id
        self.on_throttled = on_throttled  # given to every thread's hook
        self.one_attempt = one_attempt  # so is this (see BatchApiHook.one_attempt)
        self._local = threading.local()
        self._all: list[BatchApiHook] = []

    def get(self) -> BatchApiHook:
        """This thread's hook: made on its first call, reused after."""
        hook = getattr(self._local, "hook", None)
        if hook is None:
            hook = self._local.hook = BatchApiHook(self.batch_api_conn_id)
            hook.on_throttled = self.on_throttled
            hook.one_attempt = self.one_attempt
            self._all.append(hook)
        return hook

    def close(self) -> None:
        """Close every thread's session (their pooled connections)."""
        for hook in self._all:
            if "session" in hook.__dict__:
                hook.session.close()
        self._all.clear()

    def take_throttled(self) -> int:
        """Times any of the threads' hooks was told to slow down since the last call. Called
        between cycles, once every request of the last one has returned: no thread is counting."""
        taken = 0
        for hook in list(self._all):
            taken, hook.throttled = taken + hook.throttled, 0
        return taken
