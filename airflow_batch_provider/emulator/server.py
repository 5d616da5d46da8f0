"""Run the emulator on a loopback port from Python: for tests, the demo and users' own DAG tests."""

from __future__ import annotations

import ssl
import threading
import time
from dataclasses import asdict
from typing import Any

import requests
import uvicorn

from airflow_batch_provider.emulator.app import create_app
from airflow_batch_provider.emulator.config import EmulatorConfig, FaultSettings


class EmulatorServer:
    """``with EmulatorServer(EmulatorConfig(api_key="k")) as emulator: emulator.url``.

    ``port=0`` picks a free port. The server runs in a background thread of this process; the
    control helpers (:meth:`stats`, :meth:`set_faults`) call its ``/_emulator`` routes over HTTP.

    ``ssl_certfile`` and ``ssl_keyfile`` serve HTTPS, as the API behind a private CA would be;
    ``ssl_client_ca`` also requires a client certificate signed by that CA (mutual TLS). The
    control helpers then pass ``control_options`` (``verify``, ``cert``) to ``requests``.
    """

    def __init__(self, config: EmulatorConfig, host: str = "127.0.0.1", port: int = 0,
                 log_level: str = "warning", *, ssl_certfile: str | None = None, ssl_keyfile: str | None = None,
                 ssl_client_ca: str | None = None, control_options: dict[str, Any] | None = None) -> None:
        self.config = config
        self.host = host
        self.scheme = "https" if ssl_certfile else "http"
        self.control_options = control_options or {}
        tls: dict[str, Any] = {}
        if ssl_certfile:
            tls = {"ssl_certfile": ssl_certfile, "ssl_keyfile": ssl_keyfile}
            if ssl_client_ca:
                tls |= {"ssl_ca_certs": ssl_client_ca, "ssl_cert_reqs": ssl.CERT_REQUIRED}
        elif ssl_keyfile or ssl_client_ca:
            raise ValueError("ssl_keyfile and ssl_client_ca need ssl_certfile")
        self._server = uvicorn.Server(
            uvicorn.Config(create_app(config), host=host, port=port, log_level=log_level,
                           access_log=False, lifespan="on", **tls)
        )
        self._thread: threading.Thread | None = None
        self.port = port

    @property
    def url(self) -> str:
        """The base URL to point a connection at."""
        return f"{self.scheme}://{self.host}:{self.port}"

    @property
    def api_key(self) -> str:
        """The key the emulator accepts."""
        return self.config.api_key

    def start(self, timeout: float = 20.0) -> EmulatorServer:
        """Serve on a thread; returns once the server answers."""
        self._thread = threading.Thread(target=self._server.run, name="scaledown-emulator", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the emulator did not start on {self.host}:{self.port}")
            time.sleep(0.02)
        self.port = self._server.servers[0].sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        """Stop serving and wait for the thread."""
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=15)

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- control ---------------------------------------------------------------------------------
    def _control(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        response = requests.request(method, self.url + path, headers={"x-api-key": self.api_key},
                                    timeout=30, **self.control_options, **kwargs)
        response.raise_for_status()
        return response.json()

    def stats(self) -> dict[str, Any]:
        """Batches and items accepted, requests per route, faults injected."""
        return self._control("GET", "/_emulator/stats")

    def set_faults(self, **settings: Any) -> dict[str, Any]:
        """Switch fault injection at run time: ``set_faults(rate=0.3, kinds=["429", "503"])``."""
        return self._control("PUT", "/_emulator/faults", json=asdict(FaultSettings(**settings)))
