"""The HTTP client of every Prometheus request: ``PrometheusAuth`` references resolved here.

The worker reads each secret when an activity runs (a rotated service account token is
picked up at the next request batch) and keeps it only in the client's headers: no secret
enters an activity's result or error, which Temporal records in clear. Every message that
leaves this module is passed through :func:`redact` with the values just read.
"""

from __future__ import annotations

import logging
import os
import ssl
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from istio_upgrade.models.prometheus_auth import (
    PrometheusAuth,
    SecretRef,
    check_header_value,
)

log = logging.getLogger(__name__)

MAX_SECRET_BYTES = 64 * 1024


class CredentialError(Exception):
    """A reference of ``prometheus_auth`` could not be resolved on this worker.

    The message names the field and the file or variable, never a value; no retry fixes it
    until the worker's secrets change.
    """


@dataclass
class ClientOptions:
    """What an ``httpx.AsyncClient`` needs to reach one Prometheus, with the secrets read."""

    headers: dict[str, str] = field(default_factory=dict)
    auth: httpx.Auth | None = None
    verify: ssl.SSLContext | bool = True
    secrets: list[str] = field(default_factory=list)
    """The values read, for :func:`redact`."""


def read_secret(ref: SecretRef, where: str) -> str:
    """The secret ``ref`` names, stripped of surrounding whitespace as Prometheus does.

    Raises:
        CredentialError: missing, unreadable, empty or not one line of printable ASCII.
    """
    place = ref.describe()
    if ref.file is not None:
        path = Path(ref.file)
        try:
            with path.open("rb") as handle:
                raw = handle.read(MAX_SECRET_BYTES + 1)
        except OSError as exc:
            raise CredentialError(
                f"prometheus_auth.{where}: the worker cannot read {place} ({exc.strerror}); "
                "mount the Secret holding it there (see deploy/worker/worker.yaml)"
            ) from None
        if len(raw) > MAX_SECRET_BYTES:
            raise CredentialError(
                f"prometheus_auth.{where}: {place} is larger than {MAX_SECRET_BYTES} bytes; "
                "point at the file holding only the secret"
            )
        value = raw.decode("utf-8", errors="replace").strip()
    else:
        assert ref.env is not None
        found = os.environ.get(ref.env)
        if found is None:
            raise CredentialError(
                f"prometheus_auth.{where}: the worker has no {place}; set it in the worker's "
                "environment (e.g. from a Secret with env.valueFrom.secretKeyRef)"
            )
        value = found.strip()
    if not value:
        raise CredentialError(f"prometheus_auth.{where}: {place} is empty on the worker")
    try:
        check_header_value(value, place)
    except ValueError as exc:
        raise CredentialError(f"prometheus_auth.{where}: {exc}") from None
    return value


def client_options(auth: PrometheusAuth | None, url: str) -> ClientOptions:
    """Resolve ``auth`` for requests to ``url`` (the URL only for warnings).

    Raises:
        CredentialError: a reference could not be resolved, or the CA bundle not loaded.
    """
    options = ClientOptions()
    if auth is None:
        return options
    if auth.authorization is not None:
        token = read_secret(auth.authorization.secret, "authorization.credentials")
        options.secrets.append(token)
        options.headers["Authorization"] = f"{auth.authorization.type} {token}"
    if auth.basic_auth is not None:
        password = read_secret(auth.basic_auth.secret, "basic_auth.password")
        options.secrets.append(password)
        options.auth = httpx.BasicAuth(auth.basic_auth.username, password)
    for name, header in auth.http_headers.items():
        if isinstance(header, SecretRef):
            value = read_secret(header, f"http_headers.{name}")
            options.secrets.append(value)
            options.headers[name] = value
        else:
            options.headers[name] = header
    tls = auth.tls_config
    if tls is not None and tls.insecure_skip_verify:
        log.warning(
            "prometheus_auth.tls_config.insecure_skip_verify is set: the certificate of %s is "
            "NOT verified, anyone on the path can read the credentials sent to it; set "
            "tls_config.ca_file to the CA that signed it instead",
            url,
        )
        options.verify = False
    elif tls is not None and tls.ca_file is not None:
        # Only this bundle is trusted, as with Prometheus' tls_config.ca_file (with a cafile,
        # create_default_context loads no system CA).
        try:
            context = ssl.create_default_context(cafile=tls.ca_file)
        except (OSError, ssl.SSLError) as exc:
            reason = getattr(exc, "strerror", None) or getattr(exc, "reason", None) or "unreadable"
            raise CredentialError(
                f"prometheus_auth.tls_config.ca_file: the worker cannot load {tls.ca_file} as a "
                f"PEM CA bundle ({reason}); mount the CA certificate there"
            ) from None
        options.verify = context
    if options.secrets and url.startswith("http://"):
        log.warning(
            "credentials are sent to %s over plain http: anyone on the path can read them; "
            "use its https:// address",
            url,
        )
    return options


def client(options: ClientOptions, timeout: float) -> httpx.AsyncClient:
    """An ``httpx.AsyncClient`` sending what ``options`` (from :func:`client_options`) hold.

    Redirects are not followed (httpx's default): credentials never go to another host.
    """
    return httpx.AsyncClient(
        timeout=timeout, headers=options.headers, auth=options.auth, verify=options.verify
    )


def redact(message: str, secrets: list[str]) -> str:
    """``message`` with every secret value replaced by ``***`` (defence in depth)."""
    for secret in secrets:
        if secret:
            message = message.replace(secret, "***")
    return message
