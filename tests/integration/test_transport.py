"""Both hooks reach the API as a company network serves it: HTTPS from a private CA, mutual TLS, an
HTTP CONNECT proxy with a password, and the CA variables of a corporate machine set around them.
The emulator serves real TLS on loopback; proxy.py is a real proxy process."""

from __future__ import annotations

import asyncio
import json
import logging
import time

import certifi
import pytest

from airflow_batch_provider.emulator import EmulatorConfig, EmulatorServer
from airflow_batch_provider.hooks.batch_api import BatchApiAsyncHook, BatchApiHook
from airflow_batch_provider.hooks.retry import TransportError, TransportSetupError
from airflow_batch_provider.hooks.transport import TransportSettings, TransportSettingsError
from airflow_batch_provider.protocol import LineEncoder, Summarize
from tests.tls_helpers import PROXY_PASSWORD, ConnectProxy, corporate_environment, private_ca

FAST_RETRIES = {"retry_initial_wait": 0.01, "retry_max_wait": 0.05, "retry_max_attempts": 3}
PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy",
                   "NO_PROXY", "no_proxy")


@pytest.fixture(scope="module")
def corp(tmp_path_factory):
    return private_ca(tmp_path_factory.mktemp("corp-ca"))


@pytest.fixture
def corporate_machine(monkeypatch):
    """The CA variables point at the system bundle (no private CA in it); no proxy variables."""
    for name, value in corporate_environment().items():
        monkeypatch.setenv(name, value)
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def https_emulator(corp):
    servers = []

    def start(*, mutual: bool = False) -> EmulatorServer:
        server = EmulatorServer(EmulatorConfig(api_key="tls-key"), ssl_certfile=corp.server_cert,
                                ssl_keyfile=corp.server_key, ssl_client_ca=corp.ca if mutual else None,
                                control_options={"verify": corp.ca, "cert": corp.client_cert}).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def proxy(tmp_path):
    running = ConnectProxy(tmp_path).start()
    yield running
    running.stop()


def use(monkeypatch, server, **extra):
    monkeypatch.setenv("AIRFLOW_CONN_BATCH_API_DEFAULT", json.dumps(
        {"conn_type": "batch_api", "host": server.url, "password": server.api_key,
         "extra": {**FAST_RETRIES, **extra}}))


def submit_and_read(hook: BatchApiHook) -> tuple[str, list[str]]:
    """Submit three rows, wait, read the output: the batch's id and the ids read back."""
    encoder = LineEncoder(Summarize())
    batch = hook.submit_batch([encoder.encode(f"r{i}", f"Row {i} is fine. It works.") for i in range(3)])
    deadline = time.monotonic() + 30
    while not (status := hook.get_batch(batch.batch_id)).terminal:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    return batch.batch_id, [line.custom_id for line in hook.iter_output(status.batch_id)]


def poll_async(batch_id: str):
    async def go():
        async with BatchApiAsyncHook() as hook:
            return await hook.get_batch(batch_id)
    return asyncio.run(go())


def test_the_connections_ca_wins_over_the_machines_bundle_in_both_hooks(corporate_machine, https_emulator,
                                                                        corp, monkeypatch):
    """The reproduction: REQUESTS_CA_BUNDLE is set, the connection's ``verify`` names the private CA.
    requests let the variable override the session's verify; aiohttp ignored verify altogether."""
    server = https_emulator()
    use(monkeypatch, server, verify=corp.ca)
    batch_id, read = submit_and_read(BatchApiHook())
    assert read == ["r0", "r1", "r2"]
    assert poll_async(batch_id).completed == 3


def test_mutual_tls_through_a_proxy_with_a_password(corporate_machine, https_emulator, proxy, corp, monkeypatch,
                                                    caplog):
    server = https_emulator(mutual=True)
    use(monkeypatch, server, verify=corp.ca, cert=corp.client_cert, proxies={"https": proxy.url()})
    caplog.set_level(logging.DEBUG)
    hook = BatchApiHook()
    batch_id, read = submit_and_read(hook)
    assert read == ["r0", "r1", "r2"]
    through_sync = proxy.tunnels_to(server.port)
    assert through_sync >= 1
    assert poll_async(batch_id).completed == 3
    assert proxy.tunnels_to(server.port) == through_sync + 1  # the async hook's own tunnel
    assert PROXY_PASSWORD not in caplog.text and PROXY_PASSWORD not in repr(hook.settings)
    assert PROXY_PASSWORD not in repr(hook.settings.transport)
    assert PROXY_PASSWORD in hook.settings.secrets  # so an answer quoting it is redacted


def test_the_environment_alone_configures_both_hooks(https_emulator, proxy, corp, monkeypatch):
    """No transport extras: a machine whose REQUESTS_CA_BUNDLE holds the private CA and whose
    HTTPS_PROXY names the proxy. NO_PROXY and trust_env=false are honoured by both hooks alike."""
    server = https_emulator()
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", corp.ca)
    monkeypatch.setenv("HTTPS_PROXY", proxy.url())
    use(monkeypatch, server)
    batch_id, _ = submit_and_read(BatchApiHook())
    assert poll_async(batch_id).completed == 3
    tunnels = proxy.tunnels_to(server.port)
    assert tunnels >= 2

    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    BatchApiHook().get_batch(batch_id)
    poll_async(batch_id)
    assert proxy.tunnels_to(server.port) == tunnels  # both went direct

    use(monkeypatch, server, trust_env=False)  # the environment is ignored: certifi's bundle, no proxy
    for attempt in (lambda: BatchApiHook().get_batch(batch_id), lambda: poll_async(batch_id)):
        with pytest.raises(TransportSetupError, match="certificate verify failed"):
            attempt()


def test_without_the_ca_both_hooks_fail_fast_naming_host_and_problem(corporate_machine, https_emulator, corp,
                                                                      monkeypatch, caplog):
    server = https_emulator(mutual=True)
    use(monkeypatch, server, cert=corp.client_cert)
    caplog.set_level(logging.WARNING)
    for attempt in (lambda: BatchApiHook().submit_batch([LineEncoder(Summarize()).encode("r", "Text here.")]),
                    lambda: BatchApiHook().get_batch("b-1"), lambda: poll_async("b-1")):
        with pytest.raises(TransportSetupError) as raised:
            attempt()
        message = str(raised.value)
        assert f"cannot reach https://127.0.0.1:{server.port}: the TLS handshake failed (certificate verify " \
               f"failed: " in message and f"CA bundle {certifi.where()}" in message, message
        assert not raised.value.request_sent
    assert "retrying in" not in caplog.text  # failed at once: no retry can fix a certificate
    assert server.stats()["batches"] == 0  # nothing billed


def test_without_the_client_certificate_nothing_is_billed(corporate_machine, https_emulator, corp, monkeypatch):
    """A TLS 1.3 server refuses a missing client certificate after the client's side of the
    handshake; uvicorn then closes without an alert, which looks like a dropped connection: the
    submit reports an unknown outcome, reads are retried as transient. Nothing is accepted.
    (docs/connection.md says so.)"""
    from airflow_batch_provider.hooks.errors import SubmitOutcomeUnknownError

    server = https_emulator(mutual=True)
    use(monkeypatch, server, verify=corp.ca, retry_max_attempts=1)
    with pytest.raises(SubmitOutcomeUnknownError):
        BatchApiHook().submit_batch([LineEncoder(Summarize()).encode("r", "Text here.")])
    for attempt in (lambda: BatchApiHook().get_batch("b-1"), lambda: poll_async("b-1")):
        with pytest.raises(TransportError) as raised:
            attempt()
        assert raised.value.transient and not isinstance(raised.value, TransportSetupError)
    assert server.stats()["batches"] == 0


def test_a_proxy_refusing_the_credentials_fails_fast_without_showing_them(corporate_machine, https_emulator,
                                                                          proxy, corp, monkeypatch):
    server = https_emulator()
    use(monkeypatch, server, verify=corp.ca, proxies={"https": proxy.url(password="wrong-password-9")})
    for attempt in (lambda: BatchApiHook().get_batch("b-1"), lambda: poll_async("b-1")):
        with pytest.raises(TransportSetupError, match="the proxy refused [(]407") as raised:
            attempt()
        assert "wrong-password-9" not in str(raised.value)
        assert f"proxy http://127.0.0.1:{proxy.port}" in str(raised.value)


def test_a_proxy_that_cannot_be_reached_is_a_transient_failure(corporate_machine, https_emulator, corp,
                                                               monkeypatch):
    from tests.e2e.airflow_processes import free_port

    server = https_emulator()
    use(monkeypatch, server, verify=corp.ca, proxies={"https": f"http://127.0.0.1:{free_port()}"},
        retry_max_attempts=1)
    for attempt in (lambda: BatchApiHook().get_batch("b-1"), lambda: poll_async("b-1")):
        with pytest.raises(TransportError, match="could not be reached") as raised:
            attempt()
        assert not isinstance(raised.value, TransportSetupError) and raised.value.transient


class TestTransportSettings:
    def test_explicit_extras_win_and_uri_style_strings_are_typed(self, corp, monkeypatch):
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", certifi.where())
        assert TransportSettings.from_extra({"verify": corp.ca}).verify == corp.ca
        assert TransportSettings.from_extra({"verify": "false"}).verify is False
        assert TransportSettings.from_extra({"verify_ssl": "True"}).verify == certifi.where()
        assert TransportSettings.from_extra({}).verify == certifi.where()
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", corp.ca)
        assert TransportSettings.from_extra({}).verify == corp.ca
        assert TransportSettings.from_extra({"trust_env": "false"}).verify == certifi.where()
        assert TransportSettings.from_extra({"cert": [corp.client_cert, corp.client_cert]}).cert == (
            corp.client_cert, corp.client_cert)

    def test_the_connections_proxy_wins_over_the_environment_and_its_no_proxy_is_honoured(self, monkeypatch):
        for name in PROXY_VARIABLES:
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("HTTPS_PROXY", "http://env-proxy:3128")
        monkeypatch.setenv("HTTP_PROXY", "http://env-proxy:3128")
        one = TransportSettings.from_extra({"proxy": "http://corp:3128"})  # a string: every scheme
        assert one.proxy_for("https://api.example") == "http://corp:3128"
        settings = TransportSettings.from_extra({"proxies": {"https": "http://u:p@corp-proxy:8080"}})
        assert settings.proxy_for("https://api.example") == "http://u:p@corp-proxy:8080"
        assert settings.proxy_for("http://api.example") == "http://env-proxy:3128"  # none of its own
        assert settings.aiohttp_proxy("https://api.example") == (
            "http://corp-proxy:8080", {"Proxy-Authorization": "Basic dTpw"})
        bypass = TransportSettings.from_extra({"proxies": {"https": "http://corp:3128", "no_proxy": "api.example"}})
        assert bypass.proxy_for("https://api.example") is None and bypass.proxy_for("https://other") is not None
        assert TransportSettings.from_extra({"trust_env": False}).proxy_for("http://api.example") is None
        monkeypatch.setenv("NO_PROXY", "api.example")
        assert TransportSettings.from_extra({}).proxy_for("https://api.example") is None

    def test_proxy_credentials_never_show(self, monkeypatch):
        monkeypatch.setenv("HTTPS_PROXY", "http://envuser:env-secret-77@env-proxy:3128")
        settings = TransportSettings.from_extra({"proxies": {"https": "corp:s3cret-pw-9@corp:3128"}})  # no scheme
        assert "s3cret-pw-9" not in repr(settings) and "s3cret-pw-9" not in settings.describe("https://api.x")
        assert settings.describe("https://api.x").endswith("proxy http://corp:3128")
        assert {"s3cret-pw-9", "env-secret-77"} <= settings.secrets()

    def test_unusable_certificate_files_are_refused_naming_where_they_were_set(self, corp, tmp_path, monkeypatch):
        not_pem = tmp_path / "not.pem"
        not_pem.write_text("hello")
        with pytest.raises(TransportSettingsError, match="connection extra 'cert' .* no such file"):
            TransportSettings.from_extra({"verify": corp.ca, "cert": str(tmp_path / "missing.pem")})
        with pytest.raises(TransportSettingsError, match="from connection extra 'verify'.* not a PEM"):
            TransportSettings.from_extra({"verify": str(not_pem)})
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tmp_path / "gone.pem"))
        with pytest.raises(TransportSettingsError, match="from REQUESTS_CA_BUNDLE.* no such file"):
            TransportSettings.from_extra({})

    @pytest.mark.parametrize("extra", [{"verify": "/no/such/ca.pem"}, {"verify": "maybe-later"},
                                       {"trust_env": "sometimes"}, {"cert": {"file": "x"}}, {"proxies": 3128}])
    def test_unusable_extras_are_refused_by_name(self, extra):
        with pytest.raises(TransportSettingsError, match=repr(next(iter(extra)))):
            TransportSettings.from_extra(extra)


def test_without_the_ca_submit_wait_and_load_each_fail_fast_and_nothing_is_paid_twice(
        corporate_machine, https_emulator, corp, monkeypatch, tmp_path):
    """The job is submitted with the CA; then the CA is gone from the connection. The submit of new
    rows, the wait (on the worker and on the triggerer) and the load each stop at once, naming the
    host and the certificate problem, and the server bills nothing more."""
    import pandas as pd

    from airflow_batch_provider.operators.load import BatchOutputToParquetOperator
    from airflow_batch_provider.operators.submit import DataFrameToBatchOperator
    from airflow_batch_provider.sensors.batch import BatchSensor
    from airflow_batch_provider.triggers.batch import BatchTrigger
    from tests.state_store import DictStateStore

    server = https_emulator()

    def submit(rows: int):
        frame = pd.DataFrame({"id": range(rows), "text": [f"Row {i}. It is fine." for i in range(rows)]})
        return DataFrameToBatchOperator(
            task_id="submit", dataframe=frame, id_column="id", text_column="text", request=Summarize(),
            max_items_per_batch=10, manifest_dir=str(tmp_path / "jobs")).execute({"task_state_store": DictStateStore()})

    use(monkeypatch, server, verify=corp.ca)
    job = submit(30)
    billed = server.stats()["batches"]
    assert billed == 3
    use(monkeypatch, server)  # the CA is gone; the machine's bundle does not hold it
    problem = f"cannot reach https://127.0.0.1:{server.port}: the TLS handshake failed (certificate verify failed"

    with pytest.raises(TransportSetupError, match=problem.replace("(", "[(]")):
        submit(40)
    with pytest.raises(TransportSetupError, match=problem.replace("(", "[(]")):
        BatchSensor(task_id="wait", job=job, deferrable=True).execute({})

    async def trigger_events():
        return [e.payload async for e in BatchTrigger(job=job, poll_interval=0.01).run()]
    [event] = asyncio.run(trigger_events())
    assert event["status"] == "error" and problem in event["message"] and "will not recover" in event["message"]
    from airflow.sdk.exceptions import AirflowFailException

    from airflow_batch_provider.job.waiting import BatchPollingError, BatchPollingRefusedError
    from airflow_batch_provider.triggers.batch import check_event

    with pytest.raises(BatchPollingRefusedError) as resumed:  # the resumed task: failed without retries
        BatchSensor(task_id="wait", job=job).execute_complete({}, event)
    assert isinstance(resumed.value, AirflowFailException)
    with pytest.raises(BatchPollingError) as plain:  # a batch unknown, say: the task's retries apply
        check_event({**event, "refused": False})
    assert not isinstance(plain.value, AirflowFailException)

    from airflow_batch_provider.job.reconcile import BatchDownloadRefusedError

    with pytest.raises(BatchDownloadRefusedError, match=problem.replace("(", "[(]")):  # fails the task: no retry
        BatchOutputToParquetOperator(task_id="load", job=job, path=str(tmp_path / "out.parquet")).execute({})
    assert server.stats()["batches"] == billed
