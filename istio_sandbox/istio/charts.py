"""The objects upstream's charts render for an istiod install, a revision tag and the base chart.

Written from istio/istio ``manifests/charts/istio-control/istio-discovery/templates``
(``mutatingwebhook.yaml``, ``validatingwebhookconfiguration.yaml``, ``service.yaml``,
``deployment.yaml``, ``configmap.yaml``, ``istiod-injector-configmap.yaml``,
``serviceaccount.yaml``, ``clusterrole*.yaml``, ``role*.yaml``, ``poddisruptionbudget.yaml``,
``revision-tags-mwc.yaml``, ``revision-tags-svc.yaml``) and ``manifests/charts/base/templates/
defaultrevision-validatingwebhookconfiguration.yaml``, with the chart's default values,
reduced to the fields that decide behaviour (names, labels, selectors, webhook routing, the
images). ``revision=""`` renders a revisionless install, exactly as ``helm template istiod``
without ``--set revision`` does: no name suffixes, ``istio.io/rev: default`` labels, the
``namespace.`` and ``object.`` webhooks for ``istio-injection=enabled`` and opted-in pods.
"""

from __future__ import annotations

import json
from typing import Any

from istio_sandbox.istio.names import (
    DEFAULT_VALIDATOR,
    ISTIO_NAMESPACE,
    LABEL_INJECTION,
    LABEL_POD_INJECT,
    LABEL_REV,
    LABEL_TAG,
    injector_name,
    istiod_name,
    mesh_configmap_name,
    rev_label_value,
    tag_service_name,
    tag_webhook_name,
    validator_name,
)

Obj = dict[str, Any]

HUB = "docker.io/istio"
ISTIO_API_GROUPS = [
    "security.istio.io",
    "networking.istio.io",
    "telemetry.istio.io",
    "extensions.istio.io",
]


def _expr(key: str, operator: str, *values: str) -> Obj:
    expr: Obj = {"key": key, "operator": operator}
    if values:
        expr["values"] = list(values)
    return expr


def _chart_labels(revision: str, **extra: str) -> dict[str, str]:
    return {
        "app": "istiod",
        LABEL_REV: rev_label_value(revision),
        "install.operator.istio.io/owning-resource": "unknown",
        "operator.istio.io/component": "Pilot",
        "release": "istiod",
        "app.kubernetes.io/name": "istiod",
        **extra,
    }


def _injection_webhook(prefix: str, service: str, ns: list[Obj], obj: list[Obj]) -> Obj:
    """The ``core`` template of mutatingwebhook.yaml with one prefix and its selectors."""
    return {
        "name": f"{prefix}sidecar-injector.istio.io",
        "clientConfig": {
            "service": {
                "name": service,
                "namespace": ISTIO_NAMESPACE,
                "path": "/inject",
                "port": 443,
            }
        },
        "sideEffects": "None",
        "rules": [
            {
                "operations": ["CREATE"],
                "apiGroups": [""],
                "apiVersions": ["v1"],
                "resources": ["pods"],
            }
        ],
        "failurePolicy": "Fail",
        "reinvocationPolicy": "Never",
        "admissionReviewVersions": ["v1"],
        "namespaceSelector": {"matchExpressions": ns},
        "objectSelector": {"matchExpressions": obj},
    }


def revision_webhooks(selector_value: str, service: str) -> list[Obj]:
    """``rev.namespace.`` and ``rev.object.``: route ``istio.io/rev=<selector_value>``."""
    return [
        _injection_webhook(
            "rev.namespace.",
            service,
            [_expr(LABEL_REV, "In", selector_value), _expr(LABEL_INJECTION, "DoesNotExist")],
            [_expr(LABEL_POD_INJECT, "NotIn", "false")],
        ),
        _injection_webhook(
            "rev.object.",
            service,
            [_expr(LABEL_REV, "DoesNotExist"), _expr(LABEL_INJECTION, "DoesNotExist")],
            [_expr(LABEL_POD_INJECT, "NotIn", "false"), _expr(LABEL_REV, "In", selector_value)],
        ),
    ]


def default_webhooks(service: str) -> list[Obj]:
    """``namespace.`` and ``object.``: what the default revision (or ``default`` tag) serves."""
    return [
        _injection_webhook(
            "namespace.",
            service,
            [_expr(LABEL_INJECTION, "In", "enabled")],
            [_expr(LABEL_POD_INJECT, "NotIn", "false")],
        ),
        _injection_webhook(
            "object.",
            service,
            [_expr(LABEL_INJECTION, "DoesNotExist"), _expr(LABEL_REV, "DoesNotExist")],
            [_expr(LABEL_POD_INJECT, "In", "true"), _expr(LABEL_REV, "DoesNotExist")],
        ),
    ]


def _validation_webhook(name: str, service: str, object_selector: Obj | None) -> Obj:
    webhook: Obj = {
        "name": name,
        "clientConfig": {
            "service": {"name": service, "namespace": ISTIO_NAMESPACE, "path": "/validate"}
        },
        "rules": [
            {
                "operations": ["CREATE", "UPDATE"],
                "apiGroups": list(ISTIO_API_GROUPS),
                "apiVersions": ["*"],
                "resources": ["*"],
            }
        ],
        # Rendered Ignore on a fresh install; istiod's webhook controller patches it to Fail
        # (and fills caBundle) once its endpoint serves.
        "failurePolicy": "Ignore",
        "sideEffects": "None",
        "admissionReviewVersions": ["v1"],
    }
    if object_selector is not None:
        webhook["objectSelector"] = object_selector
    return webhook


def _service(name: str, labels: dict[str, str], selector: dict[str, str]) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": ISTIO_NAMESPACE, "labels": labels},
        "spec": {
            "ports": [
                {"port": 15010, "name": "grpc-xds", "protocol": "TCP"},
                {"port": 15012, "name": "https-dns", "protocol": "TCP"},
                {"port": 443, "name": "https-webhook", "targetPort": 15017, "protocol": "TCP"},
                {"port": 15014, "name": "http-monitoring", "protocol": "TCP"},
            ],
            "selector": selector,
        },
    }


def _pod_selector(revision: str) -> dict[str, str]:
    # service.yaml / deployment.yaml: a revisionless istiod is selected by ``istio: pilot``,
    # which revisioned pods (``istio: istiod``) do not carry, so it never picks a canary.
    if revision:
        return {"app": "istiod", LABEL_REV: revision}
    return {"app": "istiod", "istio": "pilot"}


def _clusterrole_name(revision: str) -> str:
    """``clusterrole.yaml``: ``istiod-clusterrole[-<rev>]-<namespace>``."""
    return f"istiod-clusterrole{'-' + revision if revision else ''}-{ISTIO_NAMESPACE}"


def _deployment(version: str, revision: str, hub: str) -> Obj:
    name = istiod_name(revision)
    selector = _pod_selector(revision)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": name,
            "namespace": ISTIO_NAMESPACE,
            "labels": _chart_labels(revision, istio="pilot"),
        },
        "spec": {
            "replicas": 1,
            "strategy": {"rollingUpdate": {"maxSurge": "100%", "maxUnavailable": "25%"}},
            # deployment.yaml: a revisionless Deployment selects ``istio: pilot`` alone.
            "selector": {"matchLabels": selector if revision else {"istio": "pilot"}},
            "template": {
                "metadata": {
                    "labels": {
                        "app": "istiod",
                        LABEL_REV: rev_label_value(revision),
                        "install.operator.istio.io/owning-resource": "unknown",
                        LABEL_POD_INJECT: "false",
                        "operator.istio.io/component": "Pilot",
                        "istio": "istiod" if revision else "pilot",
                        "istio.io/dataplane-mode": "none",
                        "app.kubernetes.io/name": "istiod",
                    },
                    "annotations": {
                        "prometheus.io/port": "15014",
                        "prometheus.io/scrape": "true",
                        LABEL_POD_INJECT: "false",
                    },
                },
                "spec": {
                    "serviceAccountName": name,
                    "containers": [
                        {
                            "name": "discovery",
                            "image": f"{hub}/pilot:{version}",
                            "args": ["discovery", "--monitoringAddr=:15014"],
                            "ports": [
                                {"containerPort": 8080, "protocol": "TCP", "name": "http-debug"},
                                {"containerPort": 15010, "protocol": "TCP", "name": "grpc-xds"},
                                {
                                    "containerPort": 15017,
                                    "protocol": "TCP",
                                    "name": "https-webhooks",
                                },
                            ],
                            "readinessProbe": {
                                "httpGet": {"path": "/ready", "port": 8080},
                                "initialDelaySeconds": 1,
                                "periodSeconds": 3,
                                "timeoutSeconds": 5,
                            },
                            "env": [
                                {"name": "REVISION", "value": rev_label_value(revision)},
                                {"name": "PILOT_CERT_PROVIDER", "value": "istiod"},
                                {
                                    "name": "ISTIOD_ADDR",
                                    "value": f"{name}.{ISTIO_NAMESPACE}.svc:15012",
                                },
                                {"name": "CLUSTER_ID", "value": "Kubernetes"},
                            ],
                        }
                    ],
                },
            },
        },
    }


def _injector_values(version: str, revision: str, hub: str) -> str:
    return json.dumps(
        {
            "revision": revision,
            "global": {
                "hub": hub,
                "tag": version,
                "istioNamespace": ISTIO_NAMESPACE,
                "proxy": {"image": "proxyv2"},
            },
        },
        indent=2,
        sort_keys=True,
    )


def render_istiod(version: str, revision: str = "", *, hub: str = HUB) -> list[Obj]:
    """``helm template istiod istio/istiod -n istio-system [--set revision=<rev>]``.

    Args:
        version: Istio version, the image tag of pilot and of the proxy it injects.
        revision: ``""`` for a revisionless install, else the revision name.
        hub: Image registry prefix.
    """
    name = istiod_name(revision)
    labels = _chart_labels(revision)
    rev_value = rev_label_value(revision)
    webhooks = revision_webhooks(rev_value, name)
    if not revision:
        webhooks += default_webhooks(name)
    return [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": name, "namespace": ISTIO_NAMESPACE, "labels": labels},
        },
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": mesh_configmap_name(revision),
                "namespace": ISTIO_NAMESPACE,
                "labels": labels,
            },
            "data": {
                "mesh": f"defaultConfig:\n  discoveryAddress: {name}.{ISTIO_NAMESPACE}.svc:15012\n"
                "rootNamespace: istio-system\ntrustDomain: cluster.local\n",
                "meshNetworks": "networks: {}\n",
            },
        },
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": injector_name(revision),
                "namespace": ISTIO_NAMESPACE,
                "labels": labels,
            },
            "data": {
                "values": _injector_values(version, revision, hub),
                "config": "policy: enabled\ndefaultTemplates: [sidecar]\n",
            },
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": _clusterrole_name(revision), "labels": labels},
            "rules": [
                {
                    "apiGroups": ["admissionregistration.k8s.io"],
                    "resources": [
                        "mutatingwebhookconfigurations",
                        "validatingwebhookconfigurations",
                    ],
                    "verbs": ["get", "list", "watch", "update", "patch"],
                },
                {
                    "apiGroups": [""],
                    "resources": ["pods", "nodes", "services", "namespaces", "endpoints"],
                    "verbs": ["get", "list", "watch"],
                },
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": _clusterrole_name(revision), "labels": labels},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": _clusterrole_name(revision),
            },
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": ISTIO_NAMESPACE}],
        },
        _deployment(version, revision, hub),
        _service(name, {**labels, "istio": "pilot"}, _pod_selector(revision)),
        {
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": {
                "name": name,
                "namespace": ISTIO_NAMESPACE,
                "labels": {**labels, "istio": "pilot"},
            },
            "spec": {"minAvailable": 1, "selector": {"matchLabels": _pod_selector(revision)}},
        },
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "MutatingWebhookConfiguration",
            "metadata": {
                "name": injector_name(revision),
                "labels": {**labels, "app": "sidecar-injector"},
            },
            "webhooks": webhooks,
        },
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingWebhookConfiguration",
            "metadata": {"name": validator_name(revision), "labels": {**labels, "istio": "istiod"}},
            "webhooks": [
                _validation_webhook(
                    "rev.validation.istio.io",
                    name,
                    {"matchExpressions": [_expr(LABEL_REV, "In", rev_value)]},
                )
            ],
        },
    ]


def render_tag(tag: str, revision: str) -> list[Obj]:
    """``revision-tags-mwc.yaml`` + ``revision-tags-svc.yaml`` for one tag of ``revision``.

    The webhooks send pods to the revision's own Service ``istiod[-<rev>]``; the tag's
    Service (same selector) exists for the proxies' xDS address. The ``default`` tag also
    carries the default webhooks (``namespace.`` and ``object.``).
    """
    service = istiod_name(revision)
    webhooks = revision_webhooks(tag, service)
    if tag == "default":
        webhooks += default_webhooks(service)
    labels = {
        LABEL_TAG: tag,
        LABEL_REV: rev_label_value(revision),
        "install.operator.istio.io/owning-resource": "unknown",
        "operator.istio.io/component": "Pilot",
        "app": "sidecar-injector",
        "release": "istiod",
        "app.kubernetes.io/name": "istiod",
    }
    return [
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "MutatingWebhookConfiguration",
            "metadata": {"name": tag_webhook_name(tag), "labels": labels},
            "webhooks": webhooks,
        },
        _service(
            tag_service_name(tag),
            {
                "app": "istiod",
                "istio": "pilot",
                LABEL_TAG: tag,
                LABEL_REV: rev_label_value(revision),
            },
            _pod_selector(revision),
        ),
    ]


def render_default_validator(default_revision: str) -> Obj:
    """The base chart's ``istiod-default-validator`` for ``defaultRevision``.

    No objectSelector: it validates every Istio resource, whichever revision it names.
    """
    service = "istiod" if default_revision in ("", "default") else istiod_name(default_revision)
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {
            "name": DEFAULT_VALIDATOR,
            "labels": {
                "app": "istiod",
                "release": "istio-base",
                "istio": "istiod",
                LABEL_REV: default_revision or "default",
                "app.kubernetes.io/name": "istiod",
            },
        },
        "webhooks": [_validation_webhook("validation.istio.io", service, None)],
    }


# (group, kind, plural, short names, versions (storage first), categories) of the base
# chart's CRDs the sandbox serves: manifests/charts/base/files/crd-all.gen.yaml.
_CRDS: tuple[tuple[str, str, str, tuple[str, ...], tuple[str, ...], tuple[str, ...]], ...] = (
    ("networking.istio.io", "DestinationRule", "destinationrules", ("dr",),
     ("v1", "v1alpha3", "v1beta1"), ("istio-io", "networking-istio-io")),
    ("networking.istio.io", "Gateway", "gateways", ("gw",),
     ("v1", "v1alpha3", "v1beta1"), ("istio-io", "networking-istio-io")),
    ("networking.istio.io", "ServiceEntry", "serviceentries", ("se",),
     ("v1", "v1alpha3", "v1beta1"), ("istio-io", "networking-istio-io")),
    ("networking.istio.io", "Sidecar", "sidecars", (),
     ("v1", "v1alpha3", "v1beta1"), ("istio-io", "networking-istio-io")),
    ("networking.istio.io", "VirtualService", "virtualservices", ("vs",),
     ("v1", "v1alpha3", "v1beta1"), ("istio-io", "networking-istio-io")),
    ("security.istio.io", "AuthorizationPolicy", "authorizationpolicies", ("ap",),
     ("v1", "v1beta1"), ("istio-io", "security-istio-io")),
    ("security.istio.io", "PeerAuthentication", "peerauthentications", ("pa",),
     ("v1", "v1beta1"), ("istio-io", "security-istio-io")),
    ("security.istio.io", "RequestAuthentication", "requestauthentications", ("ra",),
     ("v1", "v1beta1"), ("istio-io", "security-istio-io")),
    ("telemetry.istio.io", "Telemetry", "telemetries", ("telemetry",),
     ("v1alpha1", "v1"), ("istio-io", "telemetry-istio-io")),
)  # fmt: skip


def render_crds() -> list[Obj]:
    """The base chart's CustomResourceDefinitions for the Istio kinds the upgrade touches
    (reduced to names, scope and versions; schemas are ``x-kubernetes-preserve-unknown-fields``).
    """
    out = []
    for group, kind, plural, short, versions, categories in _CRDS:
        names: Obj = {
            "categories": list(categories),
            "kind": kind,
            "listKind": f"{kind}List",
            "plural": plural,
            "singular": kind.lower(),
        }
        if short:
            names["shortNames"] = list(short)
        out.append(
            {
                "apiVersion": "apiextensions.k8s.io/v1",
                "kind": "CustomResourceDefinition",
                "metadata": {
                    "name": f"{plural}.{group}",
                    "annotations": {"helm.sh/resource-policy": "keep"},
                    "labels": {
                        "app": "istio-pilot",
                        "chart": "istio",
                        "heritage": "Tiller",
                        "release": "istio",
                    },
                },
                "spec": {
                    "group": group,
                    "names": names,
                    "scope": "Namespaced",
                    "versions": [
                        {
                            "name": v,
                            "served": True,
                            "storage": i == 0,
                            "subresources": {"status": {}},
                            "schema": {
                                "openAPIV3Schema": {
                                    "type": "object",
                                    "x-kubernetes-preserve-unknown-fields": True,
                                }
                            },
                        }
                        for i, v in enumerate(versions)
                    ],
                },
            }
        )
    return out
