"""Merge single-cluster kubeconfigs into one with a context per cluster.

The worker of the demo reaches both sandboxes through one kubeconfig and picks a cluster by
context name, exactly as it would pick clusters of a real fleet.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml


def merge_kubeconfigs(sources: Mapping[str, Path], dest: Path) -> Path:
    """Write ``dest`` holding one context per entry of ``sources``.

    Args:
        sources: Context name → kubeconfig file; each file's current context is taken and
            renamed (with its cluster and user) to that name, so names never collide.
        dest: File to write; the first context becomes the current one.

    Returns:
        ``dest``.

    Raises:
        ValueError: A source has no usable current context.
    """
    merged: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [],
        "contexts": [],
        "users": [],
        "preferences": {},
    }
    for name, path in sources.items():
        config = yaml.safe_load(path.read_text()) or {}
        current = config.get("current-context")
        context = _named(config.get("contexts", []), current)
        if context is None:
            raise ValueError(f"{path}: current-context {current!r} is not among its contexts")
        ctx = context.get("context", {})
        cluster = _named(config.get("clusters", []), ctx.get("cluster"))
        user = _named(config.get("users", []), ctx.get("user"))
        if cluster is None:
            raise ValueError(f"{path}: context {current!r} names a missing cluster")
        merged["clusters"].append({"name": name, "cluster": cluster.get("cluster", {})})
        merged["users"].append({"name": name, "user": (user or {}).get("user", {})})
        new_ctx = {"cluster": name, "user": name}
        if "namespace" in ctx:
            new_ctx["namespace"] = ctx["namespace"]
        merged["contexts"].append({"name": name, "context": new_ctx})
    if merged["contexts"]:
        merged["current-context"] = merged["contexts"][0]["name"]
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(yaml.safe_dump(merged, sort_keys=False))
    return dest


def _named(items: list[dict[str, Any]], name: object) -> dict[str, Any] | None:
    return next((item for item in items if item.get("name") == name), None)
