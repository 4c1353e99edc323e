"""The product pages every list (``limit``/``continue``) and reads the same cluster as unpaged."""

from __future__ import annotations

import asyncio
import collections
import functools
from typing import Any

import pytest

from istio_upgrade.activities import kube_client
from istio_upgrade.activities.discovery import discover
from istio_upgrade.models.inventory import ClusterInventory
from tests.integration.upgrade_stack import sandbox_kube


@pytest.fixture
async def sandbox(sandbox_factory: Any) -> Any:
    box = await sandbox_factory("demo")
    yield box
    await asyncio.to_thread(box.stop)


def _facts(inventory: ClusterInventory) -> dict[str, Any]:
    return inventory.model_dump(mode="json", exclude={"discovered_at", "api_requests"})


def _counted(inventory: ClusterInventory, log: list[dict[str, Any]]) -> None:
    # The sandbox logs resource requests; /version and the discovery documents a client reads
    # to learn a kind's plural are the rest of what discover() counts.
    assert len(log) <= inventory.api_requests <= len(log) + 3


def _lists(entries: list[dict[str, Any]]) -> collections.Counter[str]:
    return collections.Counter(
        f"{e['resource']} {e['namespace']}".strip() for e in entries if e["verb"] == "list"
    )


def test_small_pages_read_the_same_inventory_with_every_request_counted(
    sandbox: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    kube = sandbox_kube(sandbox)
    monkeypatch.setattr(kube_client, "PAGE_SIZE", 100_000)
    _, seq = sandbox.requests()
    whole = discover(kube)
    log, seq = sandbox.requests(seq)
    _counted(whole, log)
    assert max(_lists(log).values()) == 1, "one request per list when a page holds everything"
    pods = len(list(kube.list("v1", "Pod")))
    assert pods > 20
    _, seq = sandbox.requests()

    # The sandbox's controllers may still be settling the scenario: compare the paged read
    # with unpaged reads taken just before and after it, once those two agree.
    for _ in range(30):
        monkeypatch.setattr(kube_client, "PAGE_SIZE", 100_000)
        whole = discover(kube)
        _, seq = sandbox.requests()
        monkeypatch.setattr(kube_client, "PAGE_SIZE", 3)
        ticks: list[None] = []
        paged = discover(kube, functools.partial(ticks.append, None))
        log, _ = sandbox.requests(seq)
        monkeypatch.setattr(kube_client, "PAGE_SIZE", 100_000)
        if _facts(discover(kube)) == _facts(whole):
            break
    _counted(paged, log)
    assert _facts(paged) == _facts(whole)
    lists = _lists(log)
    assert lists["pods"] >= pods // 3
    assert lists["namespaces"] >= len(whole.namespaces) / 3
    assert len(ticks) >= sum(lists.values()) - 2, "a heartbeat per page of the paged kinds"


def test_a_list_goes_on_after_its_snapshot_expired(sandbox: Any) -> None:
    """A restarted API server after a write no longer has the list's revision (410 Expired):
    the listing goes on with the token the answer carries, each pod still once."""
    kube = sandbox_kube(sandbox)
    everything = [
        (p["metadata"]["namespace"], p["metadata"]["name"]) for p in kube.list("v1", "Pod")
    ]
    pages = kube.list("v1", "Pod", page_size=4)
    seen = [(p["metadata"]["namespace"], p["metadata"]["name"]) for p in _take(pages, 4)]
    kube.create(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "namespace": "cart"}}
    )
    sandbox.restart()
    _, seq = sandbox.requests()
    seen += [(p["metadata"]["namespace"], p["metadata"]["name"]) for p in pages]
    log, _ = sandbox.requests(seq)
    assert 410 in {e["code"] for e in log}
    assert seen == everything


def _take(it: Any, n: int) -> list[Any]:
    return [next(it) for _ in range(n)]
