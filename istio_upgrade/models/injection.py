"""Which injector configuration a new pod would go to: Istio's label precedence, pure.

Shared by discovery (an activity) and planning (workflow code), so it lives with the
contracts both may import.
"""

from __future__ import annotations

from collections.abc import Mapping

from istio_upgrade.istio.naming import DEFAULT_TAG, LABEL_INJECTION, LABEL_REV
from istio_upgrade.models.inventory import WebhookInfo
from istio_upgrade.models.selector import label_selector_matches


def injecting_configurations(
    labels: Mapping[str, str],
    webhooks: list[WebhookInfo],
    pod_labels: Mapping[str, str] | None = None,
) -> dict[str, str | None]:
    """Injector configurations that would mutate a pod in a namespace, like the API server decides.

    Args:
        labels: Namespace labels.
        webhooks: Webhooks of every injector MutatingWebhookConfiguration.
        pod_labels: Labels of the pod; a plain pod without labels by default.

    Returns:
        Configuration name → revision it injects with, for every configuration with a
        matching webhook.
    """
    pod = pod_labels or {}
    matched: dict[str, str | None] = {}
    for hook in webhooks:
        if label_selector_matches(hook.namespace_selector, labels) and label_selector_matches(
            hook.object_selector, pod
        ):
            matched[hook.configuration] = hook.revision
    return matched


def effective_revision(
    labels: Mapping[str, str], webhooks: list[WebhookInfo], tags: Mapping[str, str]
) -> str | None:
    """The revision that would inject a new plain pod in a namespace with these labels.

    Webhooks decide when discovery found any; otherwise Istio's label precedence is applied
    (``istio-injection`` beats ``istio.io/rev``; tags resolve to their revision).
    """
    if webhooks:
        # The API server calls every matching configuration in name order and Istio's
        # injector re-injects a pod an earlier one injected (pkg/kube/inject/webhook.go
        # reads the old sidecar.istio.io/status and replaces it): the last one wins.
        matched = injecting_configurations(labels, webhooks)
        for name in sorted(matched, reverse=True):
            if matched[name]:
                return matched[name]
        return None
    injection = labels.get(LABEL_INJECTION)
    if injection is not None:
        return tags.get(DEFAULT_TAG, DEFAULT_TAG) if injection == "enabled" else None
    rev = labels.get(LABEL_REV)
    if rev is None:
        return None
    return tags.get(rev, rev)
