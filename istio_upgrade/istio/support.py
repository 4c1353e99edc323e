"""Istio's support statement, loaded from ``data/support.yaml`` (data, not code).

Read once at import from the package's own files: static, deterministic data, so the pure
planning code that workflows run may consult it.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

import yaml


@dataclass(frozen=True)
class SupportStatement:
    canary_max_minor_jump: int
    ambient_max_minor_jump: int
    kubernetes: dict[str, tuple[str, ...]]
    """Istio minor (``1.24``) → the Kubernetes minors it supports."""
    status: dict[str, str]
    """Istio minor → ``supported`` or ``end-of-life``, as of the ``current`` pair's month."""
    current: tuple[str, str]
    """The upgrade a user would make this month: (from, to) versions."""

    def kubernetes_for(self, istio_minor: str) -> tuple[str, ...] | None:
        """The Kubernetes minors ``istio_minor`` supports; None when the data has no row."""
        return self.kubernetes.get(istio_minor)


def _load() -> SupportStatement:
    text = resources.files("istio_upgrade.istio").joinpath("data/support.yaml").read_text()
    doc = yaml.safe_load(text)
    skew = doc["skew"]
    return SupportStatement(
        canary_max_minor_jump=int(skew["canary_max_minor_jump"]),
        ambient_max_minor_jump=int(skew["ambient_max_minor_jump"]),
        kubernetes={
            str(minor): tuple(str(v) for v in row["kubernetes"])
            for minor, row in (doc.get("releases") or {}).items()
        },
        status={
            str(minor): str(row.get("status", "unknown"))
            for minor, row in (doc.get("releases") or {}).items()
        },
        current=(str(doc["current"]["from"]), str(doc["current"]["to"])),
    )


SUPPORT = _load()


def minor_of(version: str) -> tuple[int, int] | None:
    """``v1.32.4-eks`` or ``1.32`` → ``(1, 32)``; None when unreadable."""
    parts = version.strip().lstrip("v").split(".")
    try:
        return int(parts[0]), int("".join(ch for ch in parts[1] if ch.isdigit()))
    except (IndexError, ValueError):
        return None
