"""Merging the sandboxes' kubeconfigs into one file with a context per cluster."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from kubernetes import config as kube_config

from istio_upgrade.devenv.kubeconfig import merge_kubeconfigs


def single(path: Path, server: str) -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "sandbox", "cluster": {"server": server}}],
                "users": [{"name": "sandbox", "user": {}}],
                "contexts": [
                    {"name": "sandbox", "context": {"cluster": "sandbox", "user": "sandbox"}}
                ],
                "current-context": "sandbox",
            }
        )
    )
    return path


def test_merged_file_has_one_context_per_cluster(tmp_path: Path) -> None:
    a = single(tmp_path / "a", "http://127.0.0.1:1111")
    b = single(tmp_path / "b", "http://127.0.0.1:2222")
    dest = merge_kubeconfigs({"demo": a, "bad-canary": b}, tmp_path / "out" / "kubeconfig")

    contexts, current = kube_config.list_kube_config_contexts(str(dest))  # type: ignore[no-untyped-call]
    assert [c["name"] for c in contexts] == ["demo", "bad-canary"]
    assert current["name"] == "demo"
    servers = {}
    for name in ("demo", "bad-canary"):
        client = kube_config.new_client_from_config(str(dest), context=name)  # type: ignore[no-untyped-call]
        servers[name] = client.configuration.host
    assert servers == {"demo": "http://127.0.0.1:1111", "bad-canary": "http://127.0.0.1:2222"}


def test_source_without_current_context_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.write_text(yaml.safe_dump({"contexts": [], "current-context": "gone"}))
    with pytest.raises(ValueError, match="current-context 'gone'"):
        merge_kubeconfigs({"x": bad}, tmp_path / "out")
