"""Starting emulators for tests: in-process (fast, configurable) or as a real `python -m` process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import requests

from airflow_batch_provider.emulator import EmulatorConfig, EmulatorServer


class EmulatorFactory:
    def __init__(self) -> None:
        self.servers: list[EmulatorServer] = []

    def __call__(self, **config) -> EmulatorServer:
        config.setdefault("api_key", "test-key")
        server = EmulatorServer(EmulatorConfig(**config)).start()
        self.servers.append(server)
        return server

    def close(self) -> None:
        for server in self.servers:
            server.stop()


@dataclass
class EmulatorProcess:
    """The emulator as its own OS process, started with the documented command line."""

    args: list[str]
    workdir: Path
    api_key: str = "process-key"
    process: subprocess.Popen | None = None
    port: int | None = None
    control_options: dict = field(default_factory=dict)  # verify, cert: for an emulator serving HTTPS

    @property
    def url(self) -> str:
        return f"{'https' if '--ssl-certfile' in self.args else 'http'}://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30) -> EmulatorProcess:
        port_file = self.workdir / f"port-{time.monotonic_ns()}"
        port = ["--port", str(self.port)] if self.port else ["--port", "0"]
        self.process = subprocess.Popen(
            [sys.executable, "-m", "airflow_batch_provider.emulator", f"--api-key={self.api_key}",
             *port, "--port-file", str(port_file), "--log-level", "warning", *self.args],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ},
        )
        deadline = time.monotonic() + timeout
        while not port_file.exists() or not port_file.read_text():
            if self.process.poll() is not None or time.monotonic() > deadline:
                output = self.process.stdout.read().decode() if self.process.poll() is not None else ""
                raise RuntimeError(f"emulator process did not start: {output}")
            time.sleep(0.05)
        self.port = int(port_file.read_text())
        return self

    def kill(self) -> None:
        """SIGKILL: no shutdown handler runs, as when a machine dies."""
        self.process.kill()
        self.process.wait(10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()

    def stats(self) -> dict:
        return requests.get(self.url + "/_emulator/stats", headers={"x-api-key": self.api_key},
                            timeout=10, **self.control_options).json()

    def control(self, path: str, **body) -> None:
        """PUT to a control route: ``control("/_emulator/capacity", items_per_second=10)``."""
        requests.put(self.url + path, json=body, headers={"x-api-key": self.api_key}, timeout=10,
                     **self.control_options).raise_for_status()


def wait_for_job(job, timeout: float = 60) -> None:
    """Until every batch of a submitted job (its XCom reference) has finished at the emulator."""
    from airflow_batch_provider.hooks.batch_api import BatchApiHook
    from airflow_batch_provider.job.manifest import read_manifest

    hook, deadline = BatchApiHook(), time.monotonic() + timeout
    for ref in read_manifest(job)[0].batches:
        while not ref.abandoned and not hook.get_batch(ref.batch_id).terminal:
            assert time.monotonic() < deadline, f"job {job['job_id']} did not finish in {timeout} s"
            time.sleep(0.02)


@contextmanager
def rewriting_proxy(server: EmulatorServer, rewrite: Callable[[bytes], bytes]) -> Iterator[str]:
    """A server on loopback in front of ``server`` that answers what no emulator would: every GET is
    passed on, and each batch's output body goes through ``rewrite`` first. Yields its base URL."""

    class Rewriting(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's naming
            answer = requests.get(server.url + self.path, headers={"x-api-key": self.headers.get("x-api-key", "")},
                                  timeout=30)
            body = rewrite(answer.content) if answer.ok and self.path.endswith("/output") else answer.content
            self.send_response(answer.status_code)
            self.send_header("content-type", answer.headers.get("content-type", "application/json"))
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    proxy = ThreadingHTTPServer(("127.0.0.1", 0), Rewriting)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{proxy.server_port}"
    finally:
        proxy.shutdown()
        proxy.server_close()
