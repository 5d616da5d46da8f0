"""How the hooks reach the API: CA bundle, client certificate and proxy, decided once for both.

A company's Airflow sits behind a private CA and a proxy, set in the connection or in the
environment (``REQUESTS_CA_BUNDLE``, ``HTTPS_PROXY``, ``NO_PROXY`` …). ``requests`` and ``aiohttp``
read that environment differently (``requests`` lets ``REQUESTS_CA_BUNDLE`` override a session's
``verify``, psf/requests#3829; ``aiohttp`` ignores it, and ignores proxies unless told to trust the
environment). So neither library is left to look: :class:`TransportSettings` resolves every setting
here, the connection's explicit extra first, then the environment (when ``trust_env``), then the
default, and both hooks are given the result explicitly. The worker's submit and load and the
triggerer's wait then reach the API the same way.
"""

from __future__ import annotations

import os
import ssl
from base64 import b64encode
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit
from urllib.request import proxy_bypass_environment  # type: ignore[attr-defined]  # public, not in typeshed

import certifi
from requests.utils import get_environ_proxies, select_proxy

from airflow_batch_provider.hooks.errors import (
    TransportSettingsError as TransportSettingsError,
    safe_url,
    url_secrets,
)

# The connection extras this module reads (the HTTP provider's names, and its aliases).
TRANSPORT_EXTRAS = ("verify", "verify_ssl", "cert", "proxies", "proxy", "trust_env")
# CA bundle variables, in the order requests reads them; SSL_CERT_FILE is OpenSSL's own.
CA_BUNDLE_ENV = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE")
PROXY_ENV = ("https_proxy", "http_proxy", "all_proxy")

_FALSE = ("false", "0", "no", "off")
_TRUE = ("true", "1", "yes", "on")


@dataclass(frozen=True)
class TransportSettings:
    """Resolved transport settings.

    :param verify: False (no verification: never for production), or the CA bundle file or
        directory to verify the API's certificate with.
    :param cert: the client certificate, and its key when in a separate file.
    :param proxies: the connection's own proxies, ``requests``-style (``{"https": url}``, ``"all"``,
        ``"https://host"``), ``no_proxy`` included; not in the repr (a proxy URL may hold a password).
    :param trust_env: whether the environment's proxy and CA variables apply.
    :param verify_from: where ``verify`` came from, for messages.
    """

    verify: bool | str = field(default_factory=certifi.where)
    cert: str | tuple[str, str] | None = None
    proxies: Mapping[str, str] = field(default_factory=dict, repr=False)
    trust_env: bool = True
    verify_from: str = "certifi"

    @classmethod
    def from_extra(cls, extra: Mapping[str, Any]) -> TransportSettings:
        """From a connection's extras and the environment of this process. The CA bundle and the
        client certificate are loaded once here, so a file that is missing or not PEM is refused
        now, naming where it was set, not met later as a failed handshake."""
        trust_env = _flag("trust_env", extra.get("trust_env", True))
        explicit = extra.get("verify", extra.get("verify_ssl"))
        verify: bool | str = True if explicit in (None, "") else _verify(explicit)
        verify_from = "connection extra 'verify'"
        if verify is True:  # "verify": true only says to verify: with what is decided here
            verify, verify_from = _environment_ca() if trust_env else (certifi.where(), "certifi")
        settings = cls(verify=verify, cert=_cert(extra.get("cert")), proxies=_proxies(extra), trust_env=trust_env,
                       verify_from=verify_from)
        settings.ssl_context()
        return settings

    # -- for the hooks ---------------------------------------------------------------------------
    def proxy_for(self, url: str) -> str | None:
        """The proxy a request to ``url`` goes through: none if the connection's ``no_proxy``
        names the host; else the connection's own proxy for the URL; else, with ``trust_env``, the
        environment's (``HTTPS_PROXY`` and the like, unless ``NO_PROXY`` names the host)."""
        host = urlsplit(url).hostname or ""
        if self.proxies.get("no_proxy") and proxy_bypass_environment(host, {"no": self.proxies["no_proxy"]}):
            return None
        own = select_proxy(url, {k: v for k, v in self.proxies.items() if k != "no_proxy"})
        if own or not self.trust_env:
            return own or None
        # no_proxy=None: requests then reads NO_PROXY itself, without rewriting os.environ.
        return select_proxy(url, get_environ_proxies(url, no_proxy=None)) or None

    def requests_options(self, url: str) -> dict[str, Any]:
        """Keyword arguments for each ``requests`` call to ``url``'s host: per request, because a
        session's own ``verify`` loses to the environment (psf/requests#3829)."""
        proxy = self.proxy_for(url)
        return {"verify": self.verify, "cert": self.cert, "proxies": {"all": proxy} if proxy else {}}

    def ssl_context(self) -> ssl.SSLContext | bool:
        """What ``aiohttp`` takes as ``ssl=``: False when verification is off, else a context
        trusting exactly the CA bundle ``requests`` is given, with the client certificate loaded."""
        try:
            if self.verify is False:
                if self.cert is None:
                    return False
                context = ssl.create_default_context()
                context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
            elif os.path.isdir(str(self.verify)):
                context = ssl.create_default_context(capath=str(self.verify))
            else:
                context = ssl.create_default_context(cafile=str(self.verify))
        except (OSError, ssl.SSLError) as exc:
            raise TransportSettingsError(f"the CA bundle {self.verify} (from {self.verify_from}) cannot be used: "
                                         f"{_file_problem(exc)}") from None
        if self.cert is not None:
            certfile, keyfile = (self.cert, None) if isinstance(self.cert, str) else self.cert
            try:
                context.load_cert_chain(certfile, keyfile)
            except (OSError, ssl.SSLError) as exc:
                raise TransportSettingsError(f"connection extra 'cert' ({certfile}) cannot be used: "
                                             f"{_file_problem(exc)}") from None
        return context

    def aiohttp_proxy(self, url: str) -> tuple[str | None, dict[str, str] | None]:
        """The proxy for ``url`` as ``aiohttp`` takes it: the URL without its userinfo, and the
        userinfo as a ``Proxy-Authorization`` header (aiohttp ignores a proxy URL's userinfo)."""
        proxy = self.proxy_for(url)
        if proxy is None:
            return None, None
        parts = urlsplit(proxy)
        if parts.username is None:
            return proxy, None
        netloc = parts.hostname or ""
        netloc = f"[{netloc}]" if ":" in netloc else netloc
        netloc = f"{netloc}:{parts.port}" if parts.port else netloc
        credentials = b64encode(f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode("latin-1"))
        return parts._replace(netloc=netloc).geturl(), {"Proxy-Authorization": f"Basic {credentials.decode()}"}

    def secrets(self) -> set[str]:
        """Credentials the settings carry (a proxy's userinfo, the connection's or, with
        ``trust_env``, the environment's): to be masked and redacted."""
        urls = [url for name, url in self.proxies.items() if name != "no_proxy"]
        if self.trust_env:
            urls += [value for name, value in os.environ.items()
                     if name.lower() in PROXY_ENV and value and "://" in value]
        found: set[str] = set()
        for url in urls:
            found |= url_secrets(url)
        return found

    def describe(self, url: str) -> str:
        """For messages: the CA bundle and the proxy a request to ``url`` uses, never a credential."""
        proxy = self.proxy_for(url)
        ca = "verification off" if self.verify is False else f"CA bundle {self.verify} (from {self.verify_from})"
        return f"{ca}; {f'proxy {safe_url(proxy)}' if proxy else 'no proxy'}"


def _environment_ca() -> tuple[str, str]:
    for name in CA_BUNDLE_ENV:
        if os.environ.get(name):
            return os.environ[name], name
    return certifi.where(), "certifi"


def _file_problem(exc: BaseException) -> str:
    """What is wrong with a certificate file, without the library's text (it may quote a path only,
    but say it plainly): missing, unreadable, or not a usable PEM."""
    if isinstance(exc, FileNotFoundError):
        return "no such file"
    if isinstance(exc, PermissionError):
        return "not readable by this process"
    return "not a PEM certificate (and key) this process can load"


def _flag(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _FALSE + _TRUE:
        return value.strip().lower() in _TRUE
    raise TransportSettingsError(f"connection extra {name!r} must be true or false, got {value!r}")


def _verify(value: Any) -> bool | str:
    """``verify``: a boolean, or a CA bundle path (URI-style connections give "false" as a string)."""
    if isinstance(value, str) and value.strip().lower() not in _FALSE + _TRUE:
        if not os.path.exists(value):
            raise TransportSettingsError(f"connection extra 'verify' names {value!r}, which does not exist: "
                                         "give the path of the CA bundle (PEM) on every worker and triggerer")
        return value
    return _flag("verify", value)


def _cert(value: Any) -> str | tuple[str, str] | None:
    """``cert``: one PEM file with certificate and key, or a [certificate, key] pair."""
    if value in (None, ""):
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, str) for v in value):
        return (value[0], value[1])
    raise TransportSettingsError("connection extra 'cert' must be a PEM file's path, or a [certificate, key] "
                                 "pair of paths")


def _proxies(extra: Mapping[str, Any]) -> dict[str, str]:
    value = extra.get("proxies", extra.get("proxy"))
    if value in (None, "", {}):
        return {}
    if isinstance(value, str):  # one proxy for every scheme
        value = {"all": value}
    if isinstance(value, Mapping) and all(isinstance(v, str) for v in value.values()):
        # A proxy without a scheme is an HTTP proxy (as requests reads it); written out, so that
        # every later parse (secrets, messages, aiohttp) sees the same URL.
        return {str(k): v if k == "no_proxy" or "://" in v else f"http://{v}" for k, v in value.items()}
    raise TransportSettingsError("connection extra 'proxies' must be a proxy URL, or a mapping like "
                                 '{"https": "http://proxy:3128", "no_proxy": "internal.example"}')


# OpenSSL's reasons for a handshake that no retry fixes: a certificate not trusted, refused or
# missing, no protocol in common, a peer that does not speak TLS. Others (an internal error, an
# EOF mid-answer) may be a server's passing trouble.
_SETUP_REASONS = ("CERTIFICATE_VERIFY_FAILED", "WRONG_VERSION_NUMBER", "UNSUPPORTED_PROTOCOL",
                  "NO_PROTOCOLS_AVAILABLE", "UNKNOWN_CA", "BAD_CERTIFICATE", "CERTIFICATE_REQUIRED",
                  "CERTIFICATE_UNKNOWN", "CERTIFICATE_EXPIRED", "CERTIFICATE_REVOKED", "UNSUPPORTED_CERTIFICATE",
                  "HANDSHAKE_FAILURE", "PROTOCOL_VERSION", "ACCESS_DENIED")


def tls_setup_problem(exc: BaseException) -> str | None:
    """What a failed TLS exchange says is wrong with the set-up ("certificate verify failed:
    unable to get local issuer certificate", "TLSV13_ALERT_CERTIFICATE_REQUIRED"), found in the
    chain of a ``requests`` or ``aiohttp`` error; None when it is not such a problem. OpenSSL's
    text names the problem, never the URL's path or query."""
    seen: set[int] = set()
    pending: list[BaseException] = [exc]
    while pending:
        error = pending.pop()
        if id(error) in seen:
            continue
        seen.add(id(error))
        # aiohttp's own errors subclass these without their attributes: their cause is looked in.
        if isinstance(error, ssl.SSLCertVerificationError) and getattr(error, "verify_message", None):
            return f"certificate verify failed: {error.verify_message}"
        reason = getattr(error, "reason", None) if isinstance(error, ssl.SSLError) else None
        if isinstance(reason, str) and any(known in reason for known in _SETUP_REASONS):
            return reason
        pending += [e for e in (error.__cause__, error.__context__, getattr(error, "reason", None),
                                getattr(error, "certificate_error", None), getattr(error, "os_error", None),
                                *error.args) if isinstance(e, BaseException)]
    return None
