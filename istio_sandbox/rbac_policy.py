"""The RBAC objects kube-apiserver creates at start-up (its ``rbac/bootstrap-roles`` hook).

A subset of upstream's bootstrap policy
(``plugin/pkg/auth/authorizer/rbac/bootstrappolicy/testdata/cluster-roles.yaml`` and
``cluster-role-bindings.yaml``): the user-facing roles ``cluster-admin``, ``admin``, ``edit``
and ``view`` (the last three aggregated from the ``system:aggregate-to-*`` roles by the
clusterrole-aggregation controller), and the roles every authenticated user is bound to:
``system:basic-user`` (self access reviews), ``system:discovery`` and
``system:public-info-viewer`` (discovery, ``/version``). ``cluster-admin`` is bound to
``system:masters``.
"""

from __future__ import annotations

import contextlib
from functools import cache

import yaml

from istio_sandbox.rbac import CLUSTER_ROLE_BINDINGS, CLUSTER_ROLES
from istio_sandbox.store import AlreadyExists, Obj, Store, clone

_META = """
    annotations:
      rbac.authorization.kubernetes.io/autoupdate: "true"
    labels:
      kubernetes.io/bootstrapping: rbac-defaults"""

_CLUSTER_ROLES = f"""
- aggregationRule:
    clusterRoleSelectors:
    - matchLabels:
        rbac.authorization.k8s.io/aggregate-to-admin: "true"
  metadata:{_META}
    name: admin
  rules: []
- metadata:{_META}
    name: cluster-admin
  rules:
  - apiGroups: ["*"]
    resources: ["*"]
    verbs: ["*"]
  - nonResourceURLs: ["*"]
    verbs: ["*"]
- aggregationRule:
    clusterRoleSelectors:
    - matchLabels:
        rbac.authorization.k8s.io/aggregate-to-edit: "true"
  metadata:{_META}
      rbac.authorization.k8s.io/aggregate-to-admin: "true"
    name: edit
  rules: []
- metadata:{_META}
      rbac.authorization.k8s.io/aggregate-to-admin: "true"
    name: system:aggregate-to-admin
  rules:
  - apiGroups: [authorization.k8s.io]
    resources: [localsubjectaccessreviews]
    verbs: [create]
  - apiGroups: [rbac.authorization.k8s.io]
    resources: [rolebindings, roles]
    verbs: [create, delete, deletecollection, get, list, patch, update, watch]
- metadata:{_META}
      rbac.authorization.k8s.io/aggregate-to-edit: "true"
    name: system:aggregate-to-edit
  rules:
  - apiGroups: [""]
    resources: [pods/attach, pods/exec, pods/portforward, pods/proxy, secrets, services/proxy]
    verbs: [get, list, watch]
  - apiGroups: [""]
    resources: [serviceaccounts]
    verbs: [impersonate]
  - apiGroups: [""]
    resources: [pods, pods/attach, pods/exec, pods/portforward, pods/proxy]
    verbs: [create, delete, deletecollection, patch, update]
  - apiGroups: [""]
    resources: [pods/eviction]
    verbs: [create]
  - apiGroups: [""]
    resources: [configmaps, events, persistentvolumeclaims, replicationcontrollers,
                replicationcontrollers/scale, secrets, serviceaccounts, services,
                services/proxy]
    verbs: [create, delete, deletecollection, patch, update]
  - apiGroups: [""]
    resources: [serviceaccounts/token]
    verbs: [create]
  - apiGroups: [apps]
    resources: [daemonsets, deployments, deployments/rollback, deployments/scale,
                replicasets, replicasets/scale, statefulsets, statefulsets/scale]
    verbs: [create, delete, deletecollection, patch, update]
  - apiGroups: [autoscaling]
    resources: [horizontalpodautoscalers]
    verbs: [create, delete, deletecollection, patch, update]
  - apiGroups: [batch]
    resources: [cronjobs, jobs]
    verbs: [create, delete, deletecollection, patch, update]
  - apiGroups: [extensions]
    resources: [daemonsets, deployments, deployments/rollback, deployments/scale, ingresses,
                networkpolicies, replicasets, replicasets/scale, replicationcontrollers/scale]
    verbs: [create, delete, deletecollection, patch, update]
  - apiGroups: [policy]
    resources: [poddisruptionbudgets]
    verbs: [create, delete, deletecollection, patch, update]
  - apiGroups: [networking.k8s.io]
    resources: [ingresses, networkpolicies]
    verbs: [create, delete, deletecollection, patch, update]
  - apiGroups: [coordination.k8s.io]
    resources: [leases]
    verbs: [create, delete, deletecollection, get, list, patch, update, watch]
- metadata:{_META}
      rbac.authorization.k8s.io/aggregate-to-view: "true"
    name: system:aggregate-to-view
  rules:
  - apiGroups: [""]
    resources: [configmaps, endpoints, persistentvolumeclaims, persistentvolumeclaims/status,
                pods, replicationcontrollers, replicationcontrollers/scale, serviceaccounts,
                services, services/status]
    verbs: [get, list, watch]
  - apiGroups: [""]
    resources: [bindings, events, limitranges, namespaces/status, pods/log, pods/status,
                replicationcontrollers/status, resourcequotas, resourcequotas/status]
    verbs: [get, list, watch]
  - apiGroups: [""]
    resources: [namespaces]
    verbs: [get, list, watch]
  - apiGroups: [discovery.k8s.io]
    resources: [endpointslices]
    verbs: [get, list, watch]
  - apiGroups: [apps]
    resources: [controllerrevisions, daemonsets, daemonsets/status, deployments,
                deployments/scale, deployments/status, replicasets, replicasets/scale,
                replicasets/status, statefulsets, statefulsets/scale, statefulsets/status]
    verbs: [get, list, watch]
  - apiGroups: [autoscaling]
    resources: [horizontalpodautoscalers, horizontalpodautoscalers/status]
    verbs: [get, list, watch]
  - apiGroups: [batch]
    resources: [cronjobs, cronjobs/status, jobs, jobs/status]
    verbs: [get, list, watch]
  - apiGroups: [extensions]
    resources: [daemonsets, daemonsets/status, deployments, deployments/scale,
                deployments/status, ingresses, ingresses/status, networkpolicies, replicasets,
                replicasets/scale, replicasets/status, replicationcontrollers/scale]
    verbs: [get, list, watch]
  - apiGroups: [policy]
    resources: [poddisruptionbudgets, poddisruptionbudgets/status]
    verbs: [get, list, watch]
  - apiGroups: [networking.k8s.io]
    resources: [ingresses, ingresses/status, networkpolicies]
    verbs: [get, list, watch]
- metadata:{_META}
    name: system:basic-user
  rules:
  - apiGroups: [authorization.k8s.io]
    resources: [selfsubjectaccessreviews, selfsubjectrulesreviews]
    verbs: [create]
  - apiGroups: [authentication.k8s.io]
    resources: [selfsubjectreviews]
    verbs: [create]
- metadata:{_META}
    name: system:discovery
  rules:
  - nonResourceURLs: [/api, /api/*, /apis, /apis/*, /healthz, /livez, /openapi, /openapi/*,
                      /readyz, /version, /version/]
    verbs: [get]
- metadata:{_META}
    name: system:public-info-viewer
  rules:
  - nonResourceURLs: [/healthz, /livez, /readyz, /version, /version/]
    verbs: [get]
- aggregationRule:
    clusterRoleSelectors:
    - matchLabels:
        rbac.authorization.k8s.io/aggregate-to-view: "true"
  metadata:{_META}
      rbac.authorization.k8s.io/aggregate-to-edit: "true"
    name: view
  rules: []
"""

_CLUSTER_ROLE_BINDINGS = f"""
- metadata:{_META}
    name: cluster-admin
  roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}}
  subjects:
  - {{apiGroup: rbac.authorization.k8s.io, kind: Group, name: "system:masters"}}
- metadata:{_META}
    name: system:basic-user
  roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "system:basic-user"}}
  subjects:
  - {{apiGroup: rbac.authorization.k8s.io, kind: Group, name: "system:authenticated"}}
- metadata:{_META}
    name: system:discovery
  roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "system:discovery"}}
  subjects:
  - {{apiGroup: rbac.authorization.k8s.io, kind: Group, name: "system:authenticated"}}
- metadata:{_META}
    name: system:public-info-viewer
  roleRef:
    apiGroup: rbac.authorization.k8s.io
    kind: ClusterRole
    name: "system:public-info-viewer"
  subjects:
  - {{apiGroup: rbac.authorization.k8s.io, kind: Group, name: "system:authenticated"}}
  - {{apiGroup: rbac.authorization.k8s.io, kind: Group, name: "system:unauthenticated"}}
"""


@cache
def _documents() -> tuple[list[Obj], list[Obj]]:
    roles: list[Obj] = yaml.safe_load(_CLUSTER_ROLES)
    bindings: list[Obj] = yaml.safe_load(_CLUSTER_ROLE_BINDINGS)
    return roles, bindings


def bootstrap_cluster_roles() -> list[Obj]:
    """The bootstrap ClusterRoles (fresh copies)."""
    return [clone(o) for o in _documents()[0]]


def bootstrap_cluster_role_bindings() -> list[Obj]:
    return [clone(o) for o in _documents()[1]]


def install(store: Store) -> None:
    """Create the bootstrap roles and bindings that do not exist yet."""
    for obj in bootstrap_cluster_roles():
        with contextlib.suppress(AlreadyExists):
            store.create(CLUSTER_ROLES, obj)
    for obj in bootstrap_cluster_role_bindings():
        with contextlib.suppress(AlreadyExists):
            store.create(CLUSTER_ROLE_BINDINGS, obj)
