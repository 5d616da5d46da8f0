"""A company network on loopback: a private CA (trustme), its server and client certificates, and
an HTTP CONNECT proxy with a password (proxy.py, its own process, stopped by its id)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import certifi
import trustme

PROXY_USER, PROXY_PASSWORD = "corp", "proxy-pass-7d1f"


@dataclass(frozen=True)
class PrivateCa:
    ca: str            # the CA's certificate: what a corporate bundle adds
    server_cert: str   # the emulator's certificate chain, for 127.0.0.1 and localhost
    server_key: str
    client_cert: str   # a client certificate and key in one PEM (mutual TLS)
    other_ca: str      # a CA that signed nothing here: "the wrong bundle"


def private_ca(folder: Path) -> PrivateCa:
    folder.mkdir(parents=True, exist_ok=True)
    ca, other = trustme.CA(organization_name="Corp Private CA"), trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    client = ca.issue_cert("airflow-worker@corp.example")
    paths = {name: str(folder / f"{name}.pem") for name in ("ca", "server_cert", "server_key", "client_cert",
                                                             "other_ca")}
    ca.cert_pem.write_to_path(paths["ca"])
    other.cert_pem.write_to_path(paths["other_ca"])
    server.private_key_pem.write_to_path(paths["server_key"])
    with open(paths["server_cert"], "wb") as out:
        for blob in server.cert_chain_pems:
            out.write(blob.bytes())
    with open(paths["client_cert"], "wb") as out:
        out.write(client.private_key_pem.bytes())
        for blob in client.cert_chain_pems:
            out.write(blob.bytes())
    return PrivateCa(**paths)


def corporate_environment() -> dict[str, str]:
    """What a corporate machine sets: the CA variables pointing at the system bundle, which does not
    hold the private CA (so a library that lets them win over the connection fails)."""
    return {"REQUESTS_CA_BUNDLE": certifi.where(), "SSL_CERT_FILE": certifi.where()}


class ConnectProxy:
    """proxy.py on a free loopback port, requiring ``PROXY_USER:PROXY_PASSWORD``; its debug log
    (a line as each tunnel opens) tells which connections went through it."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.log = workdir / "proxy.log"
        self.process: subprocess.Popen | None = None
        self.port = 0

    def start(self, timeout: float = 30) -> ConnectProxy:
        port_file = self.workdir / "proxy.port"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "proxy", "--hostname", "127.0.0.1", "--port", "0", "--port-file", str(port_file),
             "--basic-auth", f"{PROXY_USER}:{PROXY_PASSWORD}", "--num-acceptors", "1", "--num-workers", "2",
             "--threaded", "--log-level", "DEBUG"],
            stdout=open(self.log, "wb"), stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while not (port_file.exists() and port_file.read_text().strip()):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"proxy.py did not start: {self.log.read_text(errors='replace')[-2000:]}")
            time.sleep(0.1)
        self.port = int(port_file.read_text())
        return self

    def url(self, password: str = PROXY_PASSWORD) -> str:
        return f"http://{PROXY_USER}:{password}@127.0.0.1:{self.port}"

    def tunnels_to(self, port: int) -> int:
        """Tunnels opened to ``127.0.0.1:port`` so far."""
        return self.log.read_text(errors="replace").count(f"Connecting to upstream 127.0.0.1:{port}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
