"""How the worker authenticates to a Prometheus that wants credentials: references, never values.

The spec is the workflow's input, kept in clear in Temporal's history and shown in the Web UI,
so it names where the worker finds each secret (a file it has mounted, or one of its
environment variables), never the secret itself; the worker reads them when an activity runs.

Field names follow Prometheus' own HTTP client configuration (``prometheus/common``
``config/http_config.go``: ``authorization.credentials_file``, ``basic_auth.password_file``,
``http_headers``, ``tls_config.ca_file`` / ``insecure_skip_verify``) so that an SRE who wrote
a ``remote_read`` or ``promtool --http.config.file`` block recognises them; ``*_env`` is our
addition, for workers given their secrets as environment variables.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Annotated, Any, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    field_validator,
    model_validator,
)

TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
"""An HTTP field name or auth scheme: an RFC 7230 ``token`` (section 3.2.6)."""
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
MAX_HEADERS = 20
MAX_VALUE = 1024

RESERVED_HEADERS = frozenset(
    h.lower()
    for h in (
        "Host",
        "Content-Length",
        "Content-Type",
        "Content-Encoding",
        "Transfer-Encoding",
        "Connection",
        "Keep-Alive",
        "Upgrade",
        "TE",
        "Trailer",
        "Accept-Encoding",
        "Proxy-Authorization",
        "User-Agent",
    )
)
"""Headers the HTTP client sets itself (Prometheus refuses a similar list in ``http_headers``)."""

SECRET_HINTS = ("auth", "token", "secret", "password", "passwd", "cookie", "key", "credential")
"""A header whose name contains one of these carries a secret: it must be given by reference."""


def check_file(value: str, field: str) -> str:
    """An absolute path on the worker without control characters."""
    if not value.startswith("/") or any(unicodedata.category(c)[0] == "C" for c in value):
        raise ValueError(
            f"{field} must be an absolute path on the worker without control characters, e.g. "
            "/etc/istio-upgrade/prometheus/token (mount the Kubernetes Secret there)"
        )
    return value


def check_env(value: str, field: str) -> str:
    """The name of an environment variable of the worker."""
    if not ENV_NAME.match(value):
        raise ValueError(
            f"{field} must be an environment variable name (letters, digits, _; not starting "
            "with a digit), e.g. PROMETHEUS_TOKEN: the worker reads the secret from it"
        )
    return value


def _one_source(file: str | None, env: str | None, field: str, example: str) -> None:
    if (file is None) == (env is None):
        raise ValueError(
            f"{field}: give exactly one of {field}_file (a file the worker reads) or "
            f"{field}_env (an environment variable of the worker), e.g. {field}_file: {example}"
        )


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


class SecretRef(_Strict):
    """Where the worker reads one secret: ``file`` (a path) or ``env`` (a variable name)."""

    file: str | None = None
    """Absolute path of a file on the worker; its content, stripped of surrounding
    whitespace (as Prometheus does), is the secret."""
    env: str | None = None
    """Name of an environment variable of the worker holding the secret."""

    @field_validator("file")
    @classmethod
    def _file(cls, value: str | None) -> str | None:
        return None if value is None else check_file(value, "file")

    @field_validator("env")
    @classmethod
    def _env(cls, value: str | None) -> str | None:
        return None if value is None else check_env(value, "env")

    @model_validator(mode="after")
    def _exactly_one(self) -> Self:
        if (self.file is None) == (self.env is None):
            raise ValueError(
                "give exactly one of file (a path on the worker) or env (an environment "
                "variable of the worker), e.g. {file: /etc/istio-upgrade/prometheus/api-key}"
            )
        return self

    def describe(self) -> str:
        """Where the secret lives, for messages: ``file /x`` or ``env VAR`` (never the value)."""
        return f"file {self.file}" if self.file is not None else f"environment variable {self.env}"


class Authorization(_Strict):
    """``Authorization: <type> <credentials>``, the credentials read by the worker."""

    type: str = "Bearer"
    """The authentication scheme (Prometheus' default: Bearer)."""
    credentials_file: str | None = None
    """File on the worker holding the credentials, e.g. a service account token."""
    credentials_env: str | None = None
    """Environment variable of the worker holding the credentials."""

    @field_validator("type")
    @classmethod
    def _type(cls, value: str) -> str:
        if not TOKEN.match(value) or value.lower() == "basic":
            raise ValueError(
                "type must be an authentication scheme such as Bearer (one word); for Basic "
                "use basic_auth with username and password_file"
            )
        return value

    @field_validator("credentials_file")
    @classmethod
    def _file(cls, value: str | None) -> str | None:
        return None if value is None else check_file(value, "credentials_file")

    @field_validator("credentials_env")
    @classmethod
    def _env(cls, value: str | None) -> str | None:
        return None if value is None else check_env(value, "credentials_env")

    @model_validator(mode="after")
    def _exactly_one(self) -> Self:
        _one_source(
            self.credentials_file,
            self.credentials_env,
            "credentials",
            "/var/run/secrets/kubernetes.io/serviceaccount/token",
        )
        return self

    @property
    def secret(self) -> SecretRef:
        return SecretRef(file=self.credentials_file, env=self.credentials_env)


class BasicAuth(_Strict):
    """HTTP basic authentication: a username in the spec, the password read by the worker."""

    username: str
    """The user name (not secret: it is written in the spec and the history)."""
    password_file: str | None = None
    """File on the worker holding the password."""
    password_env: str | None = None
    """Environment variable of the worker holding the password."""

    @field_validator("username")
    @classmethod
    def _username(cls, value: str) -> str:
        if not value or ":" in value or any(unicodedata.category(c)[0] == "C" for c in value):
            raise ValueError(
                "username must be non-empty, without ':' or control characters (basic auth "
                "joins username:password)"
            )
        return value

    @field_validator("password_file")
    @classmethod
    def _file(cls, value: str | None) -> str | None:
        return None if value is None else check_file(value, "password_file")

    @field_validator("password_env")
    @classmethod
    def _env(cls, value: str | None) -> str | None:
        return None if value is None else check_env(value, "password_env")

    @model_validator(mode="after")
    def _exactly_one(self) -> Self:
        _one_source(
            self.password_file,
            self.password_env,
            "password",
            "/etc/istio-upgrade/prometheus/password",
        )
        return self

    @property
    def secret(self) -> SecretRef:
        return SecretRef(file=self.password_file, env=self.password_env)


class TLSConfig(_Strict):
    """How the worker checks the certificate of an https:// Prometheus."""

    ca_file: str | None = None
    """CA bundle (PEM) on the worker that signed the server's certificate; replaces the system
    trust store, as Prometheus' ``ca_file`` does. None: the system's CAs."""
    insecure_skip_verify: bool = False
    """Do not check the server's certificate at all (anyone on the path can read the
    credentials); logged as a warning at every request batch. For trials only."""

    @field_validator("ca_file")
    @classmethod
    def _file(cls, value: str | None) -> str | None:
        return None if value is None else check_file(value, "ca_file")

    @model_validator(mode="after")
    def _not_both(self) -> Self:
        if self.insecure_skip_verify and self.ca_file is not None:
            raise ValueError(
                "ca_file and insecure_skip_verify both set: with a CA bundle the certificate "
                "can be checked; remove insecure_skip_verify"
            )
        return self


def _header_kind(value: Any) -> str:
    return "reference" if isinstance(value, dict | SecretRef) else "value"


HeaderValue = Annotated[
    Annotated[str, Tag("value")] | Annotated[SecretRef, Tag("reference")],
    Discriminator(_header_kind),
]
"""A plain header value, or ``{file: …}`` / ``{env: …}`` (one error, not one per form)."""


class PrometheusAuth(_Strict):
    """Credentials, headers and TLS settings the worker uses for every Prometheus request.

    Every secret is a reference (a file or an environment variable of the worker); plain
    values are only for headers that are not secrets, such as Mimir's ``X-Scope-OrgID``.
    An empty ``prometheus_auth: {}`` means none (a cluster's, overriding the gate's).
    """

    authorization: Authorization | None = None
    """``Authorization: Bearer <token>`` (or another scheme), the token read by the worker."""
    basic_auth: BasicAuth | None = None
    """HTTP basic authentication, the password read by the worker."""
    http_headers: dict[str, HeaderValue] = Field(default_factory=dict)
    """Header name → value (not secret, e.g. ``X-Scope-OrgID: tenant-a``) or ``{file: …}`` /
    ``{env: …}`` for a secret one (e.g. ``X-Api-Key``)."""
    tls_config: TLSConfig | None = None
    """Certificate checks of an https:// URL."""

    @field_validator("http_headers")
    @classmethod
    def _headers(cls, value: dict[str, HeaderValue]) -> dict[str, HeaderValue]:
        if len(value) > MAX_HEADERS:
            raise ValueError(f"has {len(value)} headers; at most {MAX_HEADERS}")
        seen: set[str] = set()
        for name, header in value.items():
            lower = name.lower()
            if not TOKEN.match(name):
                raise ValueError(
                    f"{name!r} is not a valid header name (letters, digits and !#$%&'*+-.^_`|~ "
                    "only, no spaces or colons), e.g. X-Scope-OrgID"
                )
            if lower in seen:
                raise ValueError(f"{name} is given twice (header names ignore case); keep one")
            seen.add(lower)
            if lower in RESERVED_HEADERS:
                raise ValueError(f"{name} is set by the HTTP client itself; remove it")
            if isinstance(header, SecretRef):
                continue
            if lower == "authorization":
                raise ValueError(
                    "Authorization must not be a plain value (the spec is stored in clear in "
                    "Temporal's history): use authorization: {credentials_file: …} or "
                    "basic_auth: {username: …, password_file: …}"
                )
            if any(hint in lower for hint in SECRET_HINTS):
                # Never echo the value: it may be the secret.
                raise ValueError(
                    f"{name} looks like it carries a secret, and a plain value would be stored "
                    f"in clear in Temporal's history: give it by reference, {name}: "
                    "{file: /etc/istio-upgrade/prometheus/<key>} or {env: <VARIABLE>}"
                )
            check_header_value(header, f"header {name}")
        return value

    @model_validator(mode="after")
    def _one_authorization(self) -> Self:
        by_header = any(n.lower() == "authorization" for n in self.http_headers)
        if sum((self.authorization is not None, self.basic_auth is not None, by_header)) > 1:
            raise ValueError(
                "authorization, basic_auth and an Authorization header each set the "
                "Authorization header: keep one"
            )
        return self

    def secrets(self) -> list[tuple[str, SecretRef]]:
        """Every reference to resolve, with the field it comes from."""
        out: list[tuple[str, SecretRef]] = []
        if self.authorization is not None:
            out.append(("authorization.credentials", self.authorization.secret))
        if self.basic_auth is not None:
            out.append(("basic_auth.password", self.basic_auth.secret))
        for name, header in self.http_headers.items():
            if isinstance(header, SecretRef):
                out.append((f"http_headers.{name}", header))
        return out

    def describe(self) -> str:
        """A one-line summary for the Web UI and logs: what is sent, from where (no values)."""
        parts: list[str] = []
        if self.authorization is not None:
            parts.append(f"{self.authorization.type} from {self.authorization.secret.describe()}")
        if self.basic_auth is not None:
            parts.append(
                f"basic auth {self.basic_auth.username} from {self.basic_auth.secret.describe()}"
            )
        for name, header in self.http_headers.items():
            parts.append(
                f"{name} from {header.describe()}" if isinstance(header, SecretRef) else name
            )
        if self.tls_config is not None and self.tls_config.ca_file:
            parts.append(f"CA {self.tls_config.ca_file}")
        if self.tls_config is not None and self.tls_config.insecure_skip_verify:
            parts.append("certificate NOT verified")
        return ", ".join(parts) or "no credentials"


def check_header_value(value: str, field: str) -> str:
    """A header value of visible ASCII, spaces and tabs; the message never shows the value."""
    if not value or len(value) > MAX_VALUE:
        raise ValueError(f"{field} must be 1 to {MAX_VALUE} characters")
    if any(not (c == "\t" or " " <= c <= "~") for c in value):
        raise ValueError(
            f"{field} has a line break, control or non-ASCII character; HTTP header values "
            "are one line of printable ASCII"
        )
    return value
