"""Prometheus' ``--web.config.file``: basic auth and TLS on its HTTP API, for tests.

Prometheus (exporter-toolkit's ``web/tls_config.go``) reads ``tls_server_config``
(``cert_file``, ``key_file``) and ``basic_auth_users`` (username → bcrypt hash, and it accepts
nothing but bcrypt). The hash is made by the system's libcrypt (libxcrypt, which implements
``$2b$``) through ctypes, and the certificates by the ``openssl`` command: no crypto here.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import shutil
import ssl
import subprocess
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx


class WebConfigError(RuntimeError):
    """No bcrypt hash or certificate could be made on this machine."""


_CRYPT_LOCK = threading.Lock()
"""``crypt(3)`` returns a static buffer."""


def bcrypt_hash(password: str, cost: int = 4) -> str:
    """A ``$2b$`` bcrypt hash of ``password`` from libcrypt (cost 4, the minimum: test speed).

    Raises:
        WebConfigError: no libcrypt, or one without bcrypt.
    """
    name = ctypes.util.find_library("crypt") or "libcrypt.so.1"
    try:
        lib = ctypes.CDLL(name)
        gensalt, crypt = lib.crypt_gensalt, lib.crypt
    except (OSError, AttributeError) as exc:
        raise WebConfigError(f"no libcrypt with crypt_gensalt ({exc}); install libcrypt1") from exc
    gensalt.restype = ctypes.c_char_p
    gensalt.argtypes = [ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p, ctypes.c_int]
    crypt.restype = ctypes.c_char_p
    crypt.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    with _CRYPT_LOCK:
        # A null rbytes: libxcrypt draws the salt from the OS's random source.
        setting = gensalt(b"$2b$", cost, None, 0)
        hashed = crypt(password.encode(), setting) if setting else None
    text = hashed.decode() if hashed else ""
    if not text.startswith("$2b$"):
        raise WebConfigError("this libcrypt makes no bcrypt hashes; Prometheus accepts only bcrypt")
    return text


@dataclass(frozen=True)
class ServerCertificate:
    """A CA and a server certificate it signed, PEM files."""

    ca_file: Path
    cert_file: Path
    key_file: Path

    def client_context(self) -> ssl.SSLContext:
        """A client context trusting only this CA."""
        return ssl.create_default_context(cafile=str(self.ca_file))


def _openssl(args: Sequence[str]) -> None:
    binary = shutil.which("openssl")
    if binary is None:
        raise WebConfigError("making certificates needs the openssl command (apt install openssl)")
    done = subprocess.run([binary, *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise WebConfigError(f"openssl {args[0]} failed: {done.stderr.strip()[-500:]}")


def make_server_certificate(
    directory: Path, hosts: Sequence[str] = ("127.0.0.1", "localhost")
) -> ServerCertificate:
    """A fresh CA (``ca.crt``) and a server certificate for ``hosts`` it signed, in ``directory``.

    Raises:
        WebConfigError: no ``openssl`` command, or it failed.
    """
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca_crt = directory / "ca.key", directory / "ca.crt"
    key, csr, crt = directory / "tls.key", directory / "tls.csr", directory / "tls.crt"
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _openssl(
        [
            "req",
            "-x509",
            *ec,
            "-keyout",
            str(ca_key),
            "-out",
            str(ca_crt),
            "-days",
            "2",
            "-subj",
            "/CN=istio-upgrade test CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ]
    )
    _openssl(["req", *ec, "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={hosts[0]}"])
    names = ",".join(
        f"IP:{h}" if h.replace(".", "").isdigit() or ":" in h else f"DNS:{h}" for h in hosts
    )
    ext = directory / "server.ext"
    ext.write_text(
        f"subjectAltName={names}\nbasicConstraints=CA:FALSE\n"
        "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
    )
    _openssl(
        [
            "x509",
            "-req",
            "-in",
            str(csr),
            "-CA",
            str(ca_crt),
            "-CAkey",
            str(ca_key),
            "-CAcreateserial",
            "-out",
            str(crt),
            "-days",
            "2",
            "-extfile",
            str(ext),
        ]
    )
    return ServerCertificate(ca_file=ca_crt, cert_file=crt, key_file=key)


@dataclass(frozen=True)
class WebConfig:
    """What Prometheus' HTTP API asks of its clients."""

    users: Mapping[str, str] = field(default_factory=dict)
    """Username → password (plain here; Prometheus is given their bcrypt hashes)."""
    tls: ServerCertificate | None = None
    """Serve HTTPS with this certificate."""

    def render(self) -> dict[str, Any]:
        """The ``--web.config.file`` document."""
        doc: dict[str, Any] = {}
        if self.tls is not None:
            doc["tls_server_config"] = {
                "cert_file": str(self.tls.cert_file),
                "key_file": str(self.tls.key_file),
            }
        if self.users:
            doc["basic_auth_users"] = {u: bcrypt_hash(p) for u, p in self.users.items()}
        return doc

    def client_kwargs(self) -> dict[str, Any]:
        """``httpx`` client arguments that pass: the first user's credentials, the CA."""
        kwargs: dict[str, Any] = {}
        if self.users:
            user, password = next(iter(self.users.items()))
            kwargs["auth"] = httpx.BasicAuth(user, password)
        if self.tls is not None:
            kwargs["verify"] = self.tls.client_context()
        return kwargs
