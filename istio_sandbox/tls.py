"""The HTTPS listener's self-signed certificate.

kubectl (client-go's ``clientcmd``) sends a kubeconfig's credentials only over TLS: against
``http://`` its ``token:`` is silently dropped and every request is token-less. So a sandbox
also serves its API over HTTPS, with a certificate made here for ``127.0.0.1``/``localhost``
(and the listen host), which token kubeconfigs name as their certificate authority.

The certificate is made with the ``openssl`` command (an ECDSA P-256 key, ~10 ms) and kept
in a directory, so a restarted sandbox serves the same one and kubeconfigs stay valid.
"""

from __future__ import annotations

import ipaddress
import shutil
import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path

CERT_NAME = "tls.crt"
KEY_NAME = "tls.key"


class TLSUnavailable(RuntimeError):
    """No certificate could be made (no ``openssl`` command)."""


@dataclass(frozen=True)
class Certificate:
    cert: Path
    key: Path

    def pem(self) -> bytes:
        return self.cert.read_bytes()

    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(self.cert, self.key)
        return ctx


def _subject_alt_names(host: str) -> str:
    names = ["IP:127.0.0.1", "IP:::1", "DNS:localhost"]
    if host and host not in ("127.0.0.1", "localhost", "0.0.0.0", "::", "::1"):
        try:
            ipaddress.ip_address(host)
            names.append(f"IP:{host}")
        except ValueError:
            names.append(f"DNS:{host}")
    return ",".join(names)


def ensure_certificate(directory: Path, host: str = "127.0.0.1") -> Certificate:
    """The certificate in ``directory``, made first when absent.

    Raises:
        TLSUnavailable: there is no ``openssl`` command, or it failed.
    """
    cert, key = directory / CERT_NAME, directory / KEY_NAME
    if cert.exists() and key.exists():
        return Certificate(cert, key)
    openssl = shutil.which("openssl")
    if openssl is None:
        raise TLSUnavailable("the sandbox needs the openssl command to serve HTTPS")
    directory.mkdir(parents=True, exist_ok=True)
    cmd = [
        openssl,
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        str(key),
        "-out",
        str(cert),
        "-days",
        "3650",
        "-subj",
        "/CN=istio-sandbox",
        "-addext",
        f"subjectAltName={_subject_alt_names(host)}",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise TLSUnavailable(f"openssl could not make a certificate: {done.stderr.strip()}")
    return Certificate(cert, key)
