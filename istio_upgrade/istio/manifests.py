"""Kubernetes objects of an Istio control-plane revision and of a revision tag.

The shapes follow what ``helm template istiod --set revision=<rev>`` (chart
``manifests/charts/istio-control/istio-discovery``) and ``istioctl tag set`` produce, reduced
to the fields that decide behaviour: names, labels, selectors and webhook routing. The
``manifests`` installer applies exactly these objects, and the sandbox serves them, so both
sides agree on what a revision is.

Pure code only (no I/O), so workflows may import it too.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import yaml

from istio_upgrade.istio.naming import (
    ANNOTATION_STATUS,
    DEFAULT_TAG,
    ISTIO_NAMESPACE,
    LABEL_INJECTION,
    LABEL_POD_INJECT,
    LABEL_REV,
    LABEL_TAG,
    injector_webhook_name,
    is_dns1123_label,
    istiod_name,
    parse_version,
    tag_service_name,
    tag_webhook_name,
    validator_webhook_name,
)

Obj = dict[str, Any]

DEFAULT_HUB = "docker.io/istio"
INJECT_PATH = "/inject"
VALIDATE_PATH = "/validate"

# Istio's own webhook names; the API server only requires uniqueness inside one configuration.
WEBHOOK_REV_NAMESPACE = "rev.namespace.sidecar-injector.istio.io"
WEBHOOK_REV_OBJECT = "rev.object.sidecar-injector.istio.io"
WEBHOOK_NAMESPACE = "namespace.sidecar-injector.istio.io"
WEBHOOK_OBJECT = "object.sidecar-injector.istio.io"
WEBHOOK_VALIDATION = "rev.validation.istio.io"

_ISTIOD_PORTS: tuple[tuple[str, int, int], ...] = (
    ("grpc-xds", 15010, 15010),
    ("https-dns", 15012, 15012),
    ("https-webhook", 443, 15017),
    ("http-monitoring", 15014, 15014),
)


def _check_revision(revision: str, field: str = "revision") -> None:
    if not is_dns1123_label(revision):
        raise ValueError(
            f"{field} {revision!r} is not a DNS-1123 label: use lower-case letters, digits and "
            "dashes, e.g. 1-31-0 for version 1.31.0"
        )


def _expr(key: str, operator: str, values: Iterable[str] = ()) -> Obj:
    expr: Obj = {"key": key, "operator": operator}
    values = list(values)
    if values:
        expr["values"] = values
    return expr


def _labels(revision: str) -> dict[str, str]:
    return {
        "app": "istiod",
        "istio.io/rev": revision,
        "install.operator.istio.io/owning-resource": "unknown",
        "operator.istio.io/component": "Pilot",
        "istio": "pilot",
        "release": "istiod",
        "app.kubernetes.io/name": "istiod",
        "app.kubernetes.io/part-of": "istio",
    }


def _meta(name: str, revision: str, *, namespaced: bool = True, **extra: str) -> Obj:
    meta: Obj = {"name": name, "labels": {**_labels(revision), **extra}}
    if namespaced:
        meta["namespace"] = ISTIO_NAMESPACE
    return meta


def _injection_rules() -> list[Obj]:
    return [
        {
            "operations": ["CREATE"],
            "apiGroups": [""],
            "apiVersions": ["v1"],
            "resources": ["pods"],
        }
    ]


def _injection_webhook(
    name: str, service: str, ns_selector: list[Obj], obj_selector: list[Obj]
) -> Obj:
    return {
        "name": name,
        "clientConfig": {
            "service": {
                "name": service,
                "namespace": ISTIO_NAMESPACE,
                "path": INJECT_PATH,
                "port": 443,
            }
        },
        "rules": _injection_rules(),
        "failurePolicy": "Fail",
        "matchPolicy": "Equivalent",
        "reinvocationPolicy": "Never",
        "sideEffects": "None",
        "timeoutSeconds": 10,
        "admissionReviewVersions": ["v1"],
        "namespaceSelector": {"matchExpressions": ns_selector},
        "objectSelector": {"matchExpressions": obj_selector},
    }


def _revision_webhooks(selector_value: str, service: str) -> list[Obj]:
    """The two webhooks that route ``istio.io/rev=<selector_value>`` (namespace or pod label)."""
    return [
        _injection_webhook(
            WEBHOOK_REV_NAMESPACE,
            service,
            [
                _expr(LABEL_REV, "In", [selector_value]),
                _expr(LABEL_INJECTION, "DoesNotExist"),
            ],
            [_expr(LABEL_POD_INJECT, "NotIn", ["false"])],
        ),
        _injection_webhook(
            WEBHOOK_REV_OBJECT,
            service,
            [
                _expr(LABEL_REV, "DoesNotExist"),
                _expr(LABEL_INJECTION, "DoesNotExist"),
            ],
            [
                _expr(LABEL_POD_INJECT, "NotIn", ["false"]),
                _expr(LABEL_REV, "In", [selector_value]),
            ],
        ),
    ]


def _default_webhooks(service: str) -> list[Obj]:
    """What only the ``default`` tag serves: ``istio-injection=enabled`` and opted-in pods."""
    return [
        _injection_webhook(
            WEBHOOK_NAMESPACE,
            service,
            [_expr(LABEL_INJECTION, "In", ["enabled"])],
            [_expr(LABEL_POD_INJECT, "NotIn", ["false"])],
        ),
        _injection_webhook(
            WEBHOOK_OBJECT,
            service,
            [
                _expr(LABEL_INJECTION, "DoesNotExist"),
                _expr(LABEL_REV, "DoesNotExist"),
            ],
            [
                _expr(LABEL_POD_INJECT, "In", ["true"]),
                _expr(LABEL_REV, "DoesNotExist"),
            ],
        ),
    ]


def _istiod_service(name: str, revision: str, labels: dict[str, str]) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": ISTIO_NAMESPACE, "labels": labels},
        "spec": {
            "type": "ClusterIP",
            "ports": [
                {"name": port_name, "port": port, "targetPort": target, "protocol": "TCP"}
                for port_name, port, target in _ISTIOD_PORTS
            ],
            "selector": {"app": "istiod", LABEL_REV: revision},
        },
    }


def _deployment(version: str, revision: str, hub: str) -> Obj:
    name = istiod_name(revision)
    pod_labels = {
        "app": "istiod",
        LABEL_REV: revision,
        LABEL_POD_INJECT: "false",
        "operator.istio.io/component": "Pilot",
        "istio": "pilot",
        "istio.io/dataplane-mode": "none",
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(name, revision),
        "spec": {
            "replicas": 1,
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": "100%", "maxUnavailable": "25%"},
            },
            "selector": {"matchLabels": {"app": "istiod", LABEL_REV: revision}},
            "template": {
                "metadata": {
                    "labels": pod_labels,
                    "annotations": {
                        "prometheus.io/port": "15014",
                        "prometheus.io/scrape": "true",
                        LABEL_POD_INJECT: "false",
                    },
                },
                "spec": {
                    "serviceAccountName": name,
                    "securityContext": {"fsGroup": 1337},
                    "containers": [
                        {
                            "name": "discovery",
                            "image": f"{hub}/pilot:{version}",
                            "args": [
                                "discovery",
                                "--monitoringAddr=:15014",
                                "--log_output_level=default:info",
                                "--domain",
                                "cluster.local",
                                "--keepaliveMaxServerConnectionAge",
                                "30m",
                            ],
                            "ports": [
                                {"containerPort": 8080, "protocol": "TCP"},
                                {"containerPort": 15010, "protocol": "TCP"},
                                {"containerPort": 15017, "protocol": "TCP"},
                            ],
                            "readinessProbe": {
                                "httpGet": {"path": "/ready", "port": 8080},
                                "initialDelaySeconds": 1,
                                "periodSeconds": 3,
                                "timeoutSeconds": 5,
                            },
                            "env": [
                                {"name": "REVISION", "value": revision},
                                {"name": "PILOT_CERT_PROVIDER", "value": "istiod"},
                                {
                                    "name": "POD_NAME",
                                    "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}},
                                },
                                {
                                    "name": "POD_NAMESPACE",
                                    "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}},
                                },
                                {
                                    "name": "ISTIOD_ADDR",
                                    "value": f"{name}.{ISTIO_NAMESPACE}.svc:15012",
                                },
                                {"name": "CLUSTER_ID", "value": "Kubernetes"},
                            ],
                            "resources": {"requests": {"cpu": "500m", "memory": "2048Mi"}},
                        }
                    ],
                },
            },
        },
    }


def _mesh_config(revision: str) -> str:
    mesh = {
        "defaultConfig": {
            "discoveryAddress": f"{istiod_name(revision)}.{ISTIO_NAMESPACE}.svc:15012",
            "tracing": {"zipkin": {"address": "zipkin.istio-system:9411"}},
        },
        "defaultProviders": {"metrics": ["prometheus"]},
        "enablePrometheusMerge": True,
        "rootNamespace": ISTIO_NAMESPACE,
        "trustDomain": "cluster.local",
    }
    return yaml.safe_dump(mesh, sort_keys=True)


def _injector_values(version: str, revision: str, hub: str) -> str:
    """The ``values`` document of the injector ConfigMap: where the proxy image comes from."""
    values = {
        "revision": revision,
        "global": {
            "hub": hub,
            "tag": version,
            "istioNamespace": ISTIO_NAMESPACE,
            "proxy": {"image": "proxyv2"},
            "proxy_init": {"image": "proxyv2"},
        },
        "sidecarInjectorWebhook": {"enableNamespacesByDefault": False, "rewriteAppHTTPProbe": True},
    }
    return json.dumps(values, indent=2, sort_keys=True)


def _injector_config() -> str:
    config = {
        "policy": "enabled",
        "alwaysInjectSelector": [],
        "neverInjectSelector": [],
        "injectedAnnotations": {},
        "defaultTemplates": ["sidecar"],
        "templates": {
            "sidecar": "# proxy container istio-proxy, image {{ .Values.global.hub }}/"
            "{{ .Values.global.proxy.image }}:{{ .Values.global.tag }}\n",
            "gateway": "# gateway proxy container istio-proxy\n",
        },
        "statusAnnotation": ANNOTATION_STATUS,
    }
    return yaml.safe_dump(config, sort_keys=True)


def proxy_image(version: str, hub: str = DEFAULT_HUB) -> str:
    """The ``istio-proxy`` image a revision of ``version`` injects."""
    return f"{hub}/proxyv2:{version}"


def render_revision(version: str, revision: str, *, hub: str = DEFAULT_HUB) -> list[Obj]:
    """The objects of one istiod revision, as ``helm template istiod --set revision=…`` has them.

    Args:
        version: Istio version, e.g. ``1.31.0``; becomes the image tag of pilot and the proxy.
        revision: DNS-1123 revision name, e.g. ``1-31-0``.
        hub: Image registry and repository prefix.

    Returns:
        ServiceAccount, ConfigMaps ``istio-<rev>`` and ``istio-sidecar-injector-<rev>``,
        Deployment, Service and PodDisruptionBudget ``istiod-<rev>``, the injector
        MutatingWebhookConfiguration and the ValidatingWebhookConfiguration, in apply order.

    Raises:
        ValueError: ``version`` is not like ``1.31.0`` or ``revision`` is not a DNS-1123 label.
    """
    parse_version(version)
    _check_revision(revision)
    if revision == DEFAULT_TAG:
        raise ValueError(
            "revision 'default' is reserved for the default revision tag: name the revision "
            "after its version, e.g. 1-31-0"
        )
    name = istiod_name(revision)
    labels = _labels(revision)
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(name, revision)},
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": _meta(f"istio-{revision}", revision),
            "data": {"mesh": _mesh_config(revision), "meshNetworks": "networks: {}\n"},
        },
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": _meta(injector_webhook_name(revision), revision),
            "data": {
                "values": _injector_values(version, revision, hub),
                "config": _injector_config(),
            },
        },
        _deployment(version, revision, hub),
        _istiod_service(name, revision, labels),
        {
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": _meta(name, revision),
            "spec": {
                "minAvailable": 1,
                "selector": {"matchLabels": {"app": "istiod", LABEL_REV: revision}},
            },
        },
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "MutatingWebhookConfiguration",
            "metadata": _meta(
                injector_webhook_name(revision), revision, namespaced=False, app="sidecar-injector"
            ),
            "webhooks": _revision_webhooks(revision, name),
        },
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingWebhookConfiguration",
            "metadata": _meta(
                validator_webhook_name(revision), revision, namespaced=False, istio="istiod"
            ),
            "webhooks": [
                {
                    "name": WEBHOOK_VALIDATION,
                    "clientConfig": {
                        "service": {
                            "name": name,
                            "namespace": ISTIO_NAMESPACE,
                            "path": VALIDATE_PATH,
                            "port": 443,
                        }
                    },
                    "rules": [
                        {
                            "operations": ["CREATE", "UPDATE"],
                            "apiGroups": [
                                "security.istio.io",
                                "networking.istio.io",
                                "telemetry.istio.io",
                                "extensions.istio.io",
                            ],
                            "apiVersions": ["*"],
                            "resources": ["*"],
                        }
                    ],
                    "objectSelector": {"matchExpressions": [_expr(LABEL_REV, "In", [revision])]},
                    "failurePolicy": "Ignore",
                    "sideEffects": "None",
                    "admissionReviewVersions": ["v1"],
                }
            ],
        },
    ]


def render_tag(tag: str, revision: str) -> list[Obj]:
    """The objects ``istioctl tag set <tag> --revision <revision>`` creates.

    Args:
        tag: Tag name, a DNS-1123 label; ``default`` also serves ``istio-injection=enabled``
            namespaces and pods labelled ``sidecar.istio.io/inject=true``.
        revision: The revision the tag points at.

    Returns:
        The MutatingWebhookConfiguration ``istio-revision-tag-<tag>`` and the Service
        ``istiod-revision-tag-<tag>``.

    Raises:
        ValueError: ``tag`` or ``revision`` is not a DNS-1123 label.
    """
    _check_revision(tag, "tag")
    _check_revision(revision)
    service = istiod_name(revision)
    webhooks = _revision_webhooks(tag, service)
    if tag == DEFAULT_TAG:
        webhooks += _default_webhooks(service)
    tag_labels = {
        "app": "sidecar-injector",
        LABEL_TAG: tag,
        LABEL_REV: revision,
        "istio.io/owned-by": "istioctl",
    }
    service_labels = {"app": "istiod", "istio": "pilot", LABEL_TAG: tag, LABEL_REV: revision}
    return [
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "MutatingWebhookConfiguration",
            "metadata": {"name": tag_webhook_name(tag), "labels": tag_labels},
            "webhooks": webhooks,
        },
        _istiod_service(tag_service_name(tag), revision, service_labels),
    ]


def render_bundle_yaml(objects: Iterable[Obj]) -> str:
    """Objects as one multi-document YAML stream, the format of ``helm template`` output."""
    docs = [yaml.safe_dump(obj, sort_keys=False, default_flow_style=False) for obj in objects]
    return "---\n" + "---\n".join(docs)


def load_bundle_yaml(text: str) -> list[Obj]:
    """Parse a multi-document YAML bundle, skipping empty documents (helm emits some)."""
    objects: list[Obj] = []
    try:
        docs = list(yaml.safe_load_all(text))
    except yaml.YAMLError as error:
        # Raised as ValueError so the installer refuses it (InvalidManifest) at once: a YAML
        # error does not go away on retry.
        where = getattr(error, "problem_mark", None)
        at = f" at line {where.line + 1}, column {where.column + 1}" if where else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise ValueError(
            f"the bundle is not valid YAML{at}: {problem}; render it again with helm template"
        ) from None
    for index, doc in enumerate(docs):
        if doc is None:
            continue
        if not isinstance(doc, dict) or "kind" not in doc or "metadata" not in doc:
            raise ValueError(
                f"document {index} of the bundle is not a Kubernetes object: every document "
                "needs apiVersion, kind and metadata"
            )
        objects.append(doc)
    return objects
