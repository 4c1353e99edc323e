"""Evidence about stuck pods: their Events and the tail of their ``istio-proxy`` log."""

from __future__ import annotations

from istio_upgrade.activities.kube_client import Kube, NotFound, Obj
from istio_upgrade.istio.naming import PROXY_CONTAINER
from istio_upgrade.models.progress import Diagnostic, Straggler

MAX_PODS = 5


def _event_line(event: Obj) -> str:
    when = event.get("lastTimestamp") or event.get("eventTime") or ""
    count = event.get("count") or 1
    return (
        f"{when} {event.get('type', '')} {event.get('reason', '')} "
        f"(x{count}): {event.get('message', '')}"
    ).strip()


def _events(kube: Kube, namespace: str) -> list[Obj] | str:
    """The namespace's Events, or why they could not be read."""
    # Like the log below: a failure here (RBAC without events, a flaky API) must not replace
    # the rollout failure being diagnosed with a failure of the diagnosis.
    try:
        return list(kube.list("v1", "Event", namespace))
    except Exception as error:
        return f"(events unavailable: {error})"


def collect(kube: Kube, stragglers: list[Straggler], tail_lines: int) -> list[Diagnostic]:
    """Events and proxy logs of at most ``MAX_PODS`` stragglers (one event list per namespace)."""
    events_by_ns: dict[str, list[Obj] | str] = {}
    found: list[Diagnostic] = []
    for straggler in stragglers[:MAX_PODS]:
        if straggler.namespace not in events_by_ns:
            events_by_ns[straggler.namespace] = _events(kube, straggler.namespace)
        listed = events_by_ns[straggler.namespace]
        events = (
            [listed]
            if isinstance(listed, str)
            else [
                _event_line(e)
                for e in listed
                if (e.get("involvedObject") or {}).get("name") == straggler.pod
            ]
        )
        try:
            log = kube.pod_log(straggler.namespace, straggler.pod, PROXY_CONTAINER, tail_lines)
        except NotFound:
            log = "(no istio-proxy log: the pod or its container is gone)"
        except Exception as error:  # evidence gathering must not turn into a new failure
            log = f"(istio-proxy log unavailable: {error})"
        found.append(
            Diagnostic(
                namespace=straggler.namespace,
                pod=straggler.pod,
                events=events[-10:],
                proxy_log=log,
            )
        )
    return found
