"""No secret in any recorded history: histories are committed, so a token in one is published.

Every JSON file under ``tests/replay/`` is scanned; a history (``{"events": [...]}``) event by
event. Payloads (``{"metadata": {"encoding": …}, "data": …}``: inputs, results, heartbeat
details, failures' encoded attributes, memos, search attributes, headers) are base64 on the
wire, so they are decoded first and their JSON walked field by field: the scan sees what the
Temporal Web UI would show, and the base64 of an ordinary payload is not mistaken for a token.

What counts as a secret: bearer/basic ``Authorization`` values, JWTs (``eyJ….eyJ…``), values of
fields and ``key: value`` lines named like credentials (``token``, ``api_key``, ``password``,
``secret``, ``client-key-data`` …), PEM blocks, AWS access keys, URLs with a password, Slack
webhook URLs, and
long base64 or hex runs (digits alone — a resourceVersion, an event id — are not such a run).
:data:`EXPLAINED` lists the long hex runs a history legitimately carries, each with the
reason; a new one needs a new, explained entry — never a blanket pass.
"""

from __future__ import annotations

import base64
import binascii
import copy
import json
import math
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPLAY = Path(__file__).parent
HISTORIES = REPLAY / "histories"


@dataclass(frozen=True)
class Finding:
    file: str
    event: str
    """``<eventId> <eventType>``, or ``-`` for a JSON file that is not a history."""
    path: str
    """Where in the event: JSON keys, ``<payload>`` where a payload was decoded."""
    kind: str
    excerpt: str
    """The match with most of it masked: the report must not republish the secret."""

    def __str__(self) -> str:
        return f"{self.file}: event {self.event}: {self.path}: {self.kind}: {self.excerpt}"


# -- what a secret looks like -------------------------------------------------------------

_SECRET_KEY = re.compile(
    r"(?ix)^(?:.*[_.-])?(?:"
    r"token|access[_-]?token|refresh[_-]?token|id[_-]?token|auth[_-]?token|bearer"
    r"|api[_-]?key|apikey|secret|client[_-]?secret|secret[_-]?key|secret[_-]?access[_-]?key"
    r"|password|passwd|passphrase|private[_-]?key|authorization|credentials?"
    r"|client[_-]?key[_-]?data|token[_-]?data"
    r")$"
)
"""Field names whose (non-empty) string value is a credential. Not bare ``key``: the gate and
the planner key things by namespace."""

_CAMEL_SECRET_KEY = re.compile(r"(?:Token|ApiKey|APIKey|Secret|Password|PrivateKey)$")
"""camelCase forms (``accessToken``, ``clientSecret``); ``serviceAccountToken`` (a projected
volume *source*, not a token) is a mapping, never a string, so it cannot match."""

_PLACEHOLDER = re.compile(
    r"^(?:|\*+|x+|<[^>]*>|\$\{[^}]*\}|\{\{[^}]*\}\}|redacted|none|null)$", re.I
)

_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    ("PEM block", re.compile(r"-----BEGIN [A-Z0-9 ]*-----")),
    ("JWT", re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*")),
    ("bearer token", re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/=-]{8,}")),
    ("basic auth header", re.compile(r"(?i)\bbasic\s+[A-Za-z0-9+/]{8,}={0,2}(?![\w/+=])")),
    ("URL with a password", re.compile(r"(?i)\b[a-z][a-z0-9+.-]*://[^/\s:@\"']+:[^/\s@\"']+@")),
    (
        # A notification's webhook URL is its credential (spec.notifications names it only).
        "webhook URL",
        re.compile(r"(?i)hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9/_-]{8,}"),
    ),
    (
        "AWS access key id",
        re.compile(r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA|AIPA|ANPA|ANVA)[0-9A-Z]{16}\b"),
    ),
    (
        "credential line",
        # `token: abc…`, `api_key = "…"`, `--password=…` in YAML, logs, messages; the value on
        # the same line (``[ \t]``, not ``\s``: ``serviceAccountToken:`` opens a mapping).
        re.compile(
            r"(?im)(?:^|[\s\"'{,-])(?:[\w-]*[_-])?"
            r"(?:token|api[_-]?key|apikey|secret|password|passwd|client[_-]?secret)"
            r"[\"']?[ \t]*[:=][ \t]*[\"']?(?P<value>[^\s\"',;}#]{8,})"
        ),
    ),
]

_BASE64_RUN = re.compile(r"[A-Za-z0-9+/_-]{40,}={0,2}")
_HEX_RUN = re.compile(r"(?<![0-9A-Za-z])[0-9a-fA-F]{32,}(?![0-9A-Za-z])")

EXPLAINED: list[tuple[str, re.Pattern[str], re.Pattern[str]]] = [
    (
        # temporalio derives a worker's build id from an MD5 of the workflow code it loaded
        # (temporalio.worker._worker.load_default_build_id): a code hash, no secret.
        "worker build id",
        re.compile(r"(?:^|\.)buildId$"),
        re.compile(r"^[0-9a-f]{32}$"),
    ),
    (
        # Sticky task queues are named `<identity>-<uuid4 hex>` by the SDK's worker
        # (identity = `<pid>@<host>`): a random id, no secret.
        "sticky task queue",
        re.compile(r"(?:^|\.)(?:taskQueue\.name|stickyTaskQueue\.name)$"),
        re.compile(r"^\d+@[^\s@]+-[0-9a-f]{32}$"),
    ),
    (
        # Image digests and content hashes are addresses of public content.
        "content digest",
        re.compile(r".*"),
        re.compile(r"sha(?:256|512):[0-9a-f]{64,128}"),
    ),
]


def _entropy(text: str) -> float:
    counts = Counter(text)
    return -sum(n / len(text) * math.log2(n / len(text)) for n in counts.values())


def _looks_random(run: str) -> bool:
    """A base64 run that is a key, not a name like ``ValidatingWebhookConfiguration/istio-…``.

    Names are words joined by ``/ - _``; a random base64 string has long pieces mixing upper
    and lower case with digits, and a high per-character entropy.
    """
    pieces = re.split(r"[/+_=-]", run)
    longest = max(pieces, key=len)
    mixed = all(re.search(c, longest) for c in ("[A-Z]", "[a-z]", "[0-9]"))
    return len(longest) >= 20 and mixed and _entropy(longest) >= 3.9


def _mask(text: str) -> str:
    text = text.replace("\n", "\\n")
    return text[:6] + "…" + f"({len(text)} chars)" if len(text) > 10 else text[:2] + "…"


def _explained(path: str, text: str, run: str) -> bool:
    """Whether ``run`` (found in ``text`` at ``path``) is one of the :data:`EXPLAINED` shapes."""
    return any(
        where.search(path) and any(run in m.group(0) for m in what.finditer(text))
        for _, where, what in EXPLAINED
    )


def scan_text(path: str, text: str) -> Iterator[tuple[str, str]]:
    """(kind, masked excerpt) for every secret-like thing in one string value."""
    for kind, pattern in _PATTERNS:
        for match in pattern.finditer(text):
            value = match.groupdict().get("value") or match.group(0)
            if kind == "credential line" and _PLACEHOLDER.match(value.strip("\"'")):
                continue
            yield kind, _mask(match.group(0).strip())
    for match in _HEX_RUN.finditer(text):
        run = match.group(0)
        mixed = re.search("[0-9]", run) and re.search("[a-fA-F]", run)
        if mixed and not _explained(path, text, run):
            yield "long hex run", _mask(run)
    for match in _BASE64_RUN.finditer(text):
        run = match.group(0)
        if _HEX_RUN.fullmatch(run):
            continue  # judged as hex above
        suspicious = run.startswith("eyJ") or _looks_random(run)
        if suspicious and not _explained(path, text, run):
            yield "long base64 run", _mask(run)


def _decode_payload(payload: dict[str, Any]) -> tuple[str, Any] | None:
    """(encoding, decoded value) of a Temporal payload, None when it is not one."""
    metadata = payload.get("metadata")
    if not isinstance(metadata, dict) or "encoding" not in metadata:
        return None
    try:
        decoded = {k: base64.b64decode(v).decode() for k, v in metadata.items()}
        data = base64.b64decode(payload.get("data") or "")
    except (binascii.Error, UnicodeDecodeError, TypeError):
        return None
    encoding = decoded["encoding"]
    if encoding == "json/plain":
        try:
            return encoding, json.loads(data)
        except ValueError:
            return encoding, data.decode(errors="replace")
    if encoding == "binary/null":
        return encoding, None
    # binary/protobuf and the like: scan whatever text it holds.
    return encoding, data.decode(errors="replace")


def scan_value(value: Any, path: str = "") -> Iterator[tuple[str, str, str]]:
    """(path, kind, excerpt) of every secret-like thing in a JSON value, payloads decoded."""
    if isinstance(value, dict):
        decoded = _decode_payload(value)
        if decoded is not None:
            yield from scan_value(decoded[1], f"{path}.<payload>")
            return
        for key, item in value.items():
            where = f"{path}.{key}" if path else str(key)
            named = _SECRET_KEY.match(key) or _CAMEL_SECRET_KEY.search(key)
            if named and isinstance(item, str) and not _PLACEHOLDER.match(item.strip()):
                yield where, f"credential field {key!r}", _mask(item)
                continue
            yield from scan_value(item, where)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from scan_value(item, f"{path}[{index}]")
    elif isinstance(value, str):
        for kind, excerpt in scan_text(path, value):
            yield path, kind, excerpt


def scan_document(name: str, document: Any) -> list[Finding]:
    """Every finding of one JSON file: per event for a history, else for the whole document."""
    events = document.get("events") if isinstance(document, dict) else None
    if not isinstance(events, list):
        return [Finding(name, "-", p, k, e) for p, k, e in scan_value(document)]
    findings = []
    for event in events:
        label = f"{event.get('eventId', '?')} {event.get('eventType', '?')}"
        findings += [Finding(name, label, p, k, e) for p, k, e in scan_value(event)]
    return findings


def check_files(paths: list[Path], root: Path) -> None:
    """Fail naming file, event and field of every secret-like value in ``paths``."""
    findings = []
    for path in paths:
        findings += scan_document(str(path.relative_to(root)), json.loads(path.read_text()))
    assert not findings, "secrets in recorded histories:\n" + "\n".join(
        str(f) for f in findings[:50]
    )


def recorded_files() -> list[Path]:
    return sorted(REPLAY.rglob("*.json"))


# -- the recorded histories ---------------------------------------------------------------


def test_the_scan_covers_the_recorded_histories() -> None:
    files = recorded_files()
    assert len([p for p in files if p.parent == HISTORIES]) >= 10, files
    doc = json.loads((HISTORIES / "clean-upgrade.json").read_text())
    # The spec is in the first event's input payload: decoding must have reached it.
    assert any(p.endswith(".<payload>.cluster.name") for p, _ in _strings(doc["events"][0]))


@pytest.mark.parametrize("path", recorded_files(), ids=lambda p: str(p.relative_to(REPLAY)))
def test_no_secret_in_recorded_history(path: Path) -> None:
    check_files([path], REPLAY)


def _strings(value: Any, path: str = "") -> Iterator[tuple[str, str]]:
    if isinstance(value, dict):
        decoded = _decode_payload(value)
        if decoded is not None:
            yield from _strings(decoded[1], f"{path}.<payload>")
            return
        for key, item in value.items():
            yield from _strings(item, f"{path}.{key}" if path else key)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item, path)
    elif isinstance(value, str):
        yield path, value


# -- the scan can fail: planted secrets ---------------------------------------------------

# Fake credentials in the shapes real ones have; none of them is valid anywhere.
_JWT = (
    "eyJhbGciOiJSUzI1NiIsImtpZCI6InRlc3QifQ."
    "eyJpc3MiOiJrdWJlcm5ldGVzL3NlcnZpY2VhY2NvdW50Iiwic3ViIjoidGVzdCJ9."
    "c2lnbmF0dXJlLW5vdC1yZWFs"
)
PLANTED = {
    "bearer token": f"request failed: Authorization: Bearer {'Zm9vYmFy' * 3}",
    "JWT": f"service account token {_JWT} rejected",
    "credential line": "kubeconfig user:\n  token: sha256~Q3p1dE9kYnNtWkZ3eE1nSlE\n",
    "PEM block": "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\n-----END RSA PRIVATE KEY-----",
    "AWS access key id": "credentials AKIAIOSFODNN7EXAMPLE in the environment",
    "URL with a password": "https://admin:s3cr3t-pass@prometheus.example:9090",
    "webhook URL": "https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX",
    "long base64 run": "caBundle LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCk1JSUM1ekNDQWMr",
    "long hex run": "secret 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
}
"""Kind of finding → a text holding one."""


def _planted_history(where: str, secret: str) -> dict[str, Any]:
    doc = json.loads((HISTORIES / "clean-upgrade.json").read_text())
    events = copy.deepcopy(doc["events"][:6])
    started = events[0]["workflowExecutionStartedEventAttributes"]
    if where == "field":
        # A plain (not encoded) history field: the identity a worker reports.
        attributes = next(v for k, v in events[4].items() if k.endswith("EventAttributes"))
        attributes["identity"] = secret
    else:
        # Inside the spec payload: a Prometheus URL, the way a careless spec would carry it.
        payload = started["input"]["payloads"][0]
        spec = json.loads(base64.b64decode(payload["data"]))
        spec["cluster"]["prometheus_url"] = secret
        payload["data"] = base64.b64encode(json.dumps(spec).encode()).decode()
    return {"events": events}


@pytest.mark.parametrize("where", ["field", "payload"])
@pytest.mark.parametrize("name", sorted(PLANTED))
def test_a_planted_secret_fails_naming_file_and_event(
    tmp_path: Path, name: str, where: str
) -> None:
    """In a plain field and inside an encoded payload, every kind of secret fails the check."""
    doc = _planted_history(where, PLANTED[name])
    (tmp_path / "planted.json").write_text(json.dumps(doc))
    with pytest.raises(AssertionError) as failure:
        check_files([tmp_path / "planted.json"], tmp_path)
    message = str(failure.value)
    event = doc["events"][4 if where == "field" else 0]
    assert f"planted.json: event {event['eventId']} {event['eventType']}" in message
    assert f": {name}: " in message
    if where == "payload":
        assert "input.payloads[0].<payload>.cluster.prometheus_url" in message
    # The report masks what it found.
    assert PLANTED[name] not in message


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("api_key", "tmprl_live_abcdef123456"),
        ("accessToken", "ya29.a0AfH6SMB"),
        ("password", "hunter22"),
    ],
)
def test_a_credential_field_in_a_payload_fails(tmp_path: Path, field: str, value: str) -> None:
    doc = _planted_history("payload", "http://127.0.0.1:9090")
    payload = doc["events"][0]["workflowExecutionStartedEventAttributes"]["input"]["payloads"][0]
    spec = json.loads(base64.b64decode(payload["data"]))
    spec["cluster"][field] = value
    payload["data"] = base64.b64encode(json.dumps(spec).encode()).decode()
    findings = scan_document("planted.json", doc)
    assert [f.kind for f in findings] == [f"credential field {field!r}"], findings


@pytest.mark.parametrize(
    "text",
    [
        "ValidatingWebhookConfiguration/istio-validator-1-24-2-istio-system",
        "EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES",
        "- name: istio-token\n  serviceAccountToken:\n    audience: istio-ca\n",
        "image: docker.io/istio/proxyv2@sha256:" + "ab12" * 16,
        "token: ''",
        "http://127.0.0.1:9090/api/v1/query",
    ],
)
def test_ordinary_text_is_not_a_secret(text: str) -> None:
    assert list(scan_text("x", text)) == []
