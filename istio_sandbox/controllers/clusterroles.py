"""The clusterrole-aggregation controller of kube-controller-manager
(``pkg/controller/clusterroleaggregation/clusterroleaggregation_controller.go``).

A ClusterRole with an ``aggregationRule`` gets as ``rules`` the union of the rules of every
other ClusterRole its ``clusterRoleSelectors`` match: selector by selector, matching roles
by name, each rule once. It keeps them so as ClusterRoles come, change and go; this is how
``admin``, ``edit`` and ``view`` pick up the ``system:aggregate-to-*`` roles and the
``aggregate-to-*`` roles a chart installs.
"""

from __future__ import annotations

import contextlib
from typing import Any

from istio_sandbox.api.selectors import SelectorError, match_label_selector
from istio_sandbox.rbac import CLUSTER_ROLES
from istio_sandbox.store import NotFound, Obj, Store, WatchEvent


class ClusterRoleAggregation:
    """Keeps aggregated ClusterRoles' rules; runs synchronously after every ClusterRole write."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def on_change(self, ev: WatchEvent) -> None:
        if ev.rt.key == CLUSTER_ROLES.key:
            self.sync_all()

    def sync_all(self) -> None:
        roles = self._store.list(CLUSTER_ROLES, copy_objects=False)
        for role in roles:
            if role.get("aggregationRule") is not None:
                self._sync(role, roles)

    def _sync(self, role: Obj, roles: list[Obj]) -> None:
        name = role["metadata"]["name"]
        rules: list[Any] = []
        selectors = (role.get("aggregationRule") or {}).get("clusterRoleSelectors") or []
        for selector in selectors:
            for other in roles:  # sorted by name, as the controller sorts them
                if other["metadata"]["name"] == name:
                    continue
                try:
                    if not match_label_selector(selector, other["metadata"].get("labels")):
                        continue
                except SelectorError:
                    break
                for rule in other.get("rules") or []:
                    if rule not in rules:
                        rules.append(rule)
        if rules == (role.get("rules") or []):
            return

        def set_rules(obj: Obj) -> None:
            obj["rules"] = rules

        with contextlib.suppress(NotFound):
            self._store.mutate(CLUSTER_ROLES, "", name, set_rules)
