"""Pure planning: which namespaces migrate, in which batches, and whether it is safe to start.

No I/O. The ``plan_cluster`` activity runs it next to discovery, so the inventory (megabytes
for a large mesh) never enters the workflow's history, only the plan does; upgrades recorded
before ran it in the workflow on the discovered inventory. Unit tests need no cluster.
"""

from __future__ import annotations

import math
from collections import Counter

from istio_upgrade.istio.naming import (
    ANNOTATION_INJECT_TEMPLATES,
    DEFAULT_TAG,
    LABEL_INJECTION,
    LABEL_REV,
    parse_version,
)
from istio_upgrade.istio.support import minor_of
from istio_upgrade.models.injection import effective_revision, injecting_configurations
from istio_upgrade.models.inventory import (
    RESTARTABLE_KINDS,
    ClusterInventory,
    GatewayInfo,
    NamespaceInfo,
)
from istio_upgrade.models.plan import (
    Batch,
    ExcludedNamespace,
    Finding,
    NamespaceLabels,
    Plan,
    PrecheckReport,
    WorkloadRevision,
)
from istio_upgrade.models.selector import selector_matches
from istio_upgrade.models.spec import UpgradeSpec

__all__ = [
    "ANNOTATION_INJECT_TEMPLATES",
    "effective_revision",
    "injecting_configurations",
    "plan_upgrade",
    "source_revision_of",
]

_NEVER_MIGRATE = frozenset({"kube-system", "kube-public", "kube-node-lease"})


def source_revision_of(inventory: ClusterInventory, target_revision: str) -> str | None:
    """The revision most namespaces use (ties: the ``default`` tag's), other than the target."""
    counts = Counter(
        ns.effective_revision
        for ns in inventory.namespaces
        if ns.effective_revision and ns.effective_revision != target_revision
    )
    if counts:
        best = max(counts.values())
        tops = sorted(rev for rev, n in counts.items() if n == best)
        default = inventory.tags.get(DEFAULT_TAG)
        return default if default in tops else tops[0]
    default = inventory.tags.get(DEFAULT_TAG)
    if default and default != target_revision:
        return default
    others = [r.name for r in inventory.revisions if r.name != target_revision]
    return others[0] if len(others) == 1 else None


def _selected(inventory: ClusterInventory, spec: UpgradeSpec) -> list[NamespaceInfo]:
    m = spec.migration
    chosen = []
    for ns in inventory.namespaces:
        by_selector = selector_matches(m.selector, ns.labels)
        if (by_selector or ns.name in m.include) and ns.name not in m.exclude:
            chosen.append(ns)
    return chosen


def _labels_of(ns: NamespaceInfo) -> NamespaceLabels:
    return NamespaceLabels(
        namespace=ns.name,
        istio_injection=ns.labels.get(LABEL_INJECTION),
        istio_rev=ns.labels.get(LABEL_REV),
    )


def _exclusion(ns: NamespaceInfo, source: str, target: str) -> str | None:
    if ns.name in _NEVER_MIGRATE:
        return "Kubernetes system namespace; never migrated"
    if ns.effective_revision is None:
        return "no sidecar injection enabled (no istio-injection=enabled or istio.io/rev label)"
    if ns.effective_revision == target:
        return f"already on the target revision {target}"
    if ns.effective_revision != source:
        return f"uses revision {ns.effective_revision}, not the source revision {source}"
    return None


def _auto_batches(names: list[str], spec: UpgradeSpec) -> list[list[str]]:
    m = spec.migration
    canary = [n for n in m.canary if n in names]
    rest = [n for n in names if n not in canary]
    batches: list[list[str]] = []
    size = len(canary) if canary else min(m.first_batch_size, m.max_batch_size)
    if canary:
        batches.append(canary)
    while rest:
        if batches:
            size = min(m.max_batch_size, max(size + 1, math.ceil(size * m.growth_factor)))
        batches.append(rest[:size])
        rest = rest[size:]
    return batches


def _explicit_batches(
    spec: UpgradeSpec,
    inventory: ClusterInventory,
    migratable: dict[str, NamespaceInfo],
    excluded: dict[str, str],
    findings: list[Finding],
) -> list[list[str]]:
    assert spec.migration.batches is not None
    batches: list[list[str]] = []
    for index, batch in enumerate(spec.migration.batches):
        field = f"migration.batches[{index}]"
        for name in batch:
            if inventory.namespace(name) is None:
                findings.append(
                    Finding(
                        severity="error",
                        code="BATCH_NAMESPACE_MISSING",
                        namespace=name,
                        message=f"{field}: namespace {name!r} does not exist in the cluster; "
                        "remove it or fix the name",
                    )
                )
            elif name in excluded:
                findings.append(
                    Finding(
                        severity="error",
                        code="BATCH_NAMESPACE_NOT_MIGRATABLE",
                        namespace=name,
                        message=f"{field}: namespace {name!r} cannot migrate: {excluded[name]}",
                    )
                )
            elif name not in migratable:
                findings.append(
                    Finding(
                        severity="error",
                        code="BATCH_NAMESPACE_NOT_SELECTED",
                        namespace=name,
                        message=f"{field}: namespace {name!r} is not selected by "
                        "migration.selector/include/exclude; add it to migration.include",
                    )
                )
        batches.append([n for n in batch if n in migratable])
    listed = {n for b in spec.migration.batches for n in b}
    for name in sorted(set(migratable) - listed):
        findings.append(
            Finding(
                severity="warning",
                code="NOT_IN_ANY_BATCH",
                namespace=name,
                message=f"namespace {name!r} is selected but in no batch of migration.batches; "
                "it stays on the old revision and keeps it installed",
            )
        )
    return [b for b in batches if b]


_COUNT_WORDS = {1: "one", 2: "two", 3: "three"}


def _minor_skew(
    spec: UpgradeSpec,
    inventory: ClusterInventory,
    source_version: str | None,
    findings: list[Finding],
) -> None:
    max_jump = inventory.support.canary_max_minor_jump if inventory.support else 2
    if source_version is None:
        findings.append(
            Finding(
                severity="warning",
                code="SOURCE_VERSION_UNKNOWN",
                message="the source revision's version could not be read from its pilot image; "
                "version skew is not checked",
            )
        )
        return
    try:
        source = parse_version(source_version)
    except ValueError:
        findings.append(
            Finding(
                severity="warning",
                code="SOURCE_VERSION_UNKNOWN",
                message=f"source version {source_version!r} is not parseable; skew is not checked",
            )
        )
        return
    target = parse_version(spec.target.version)
    severity = "warning" if spec.force else "error"
    fix = "" if spec.force else "; set force: true to do it anyway"
    if target == source:
        findings.append(
            Finding(
                severity="error",
                code="SAME_VERSION",
                message=f"target.version {spec.target.version} is the version already running",
            )
        )
    elif target < source:
        findings.append(
            Finding(
                severity=severity,
                code="DOWNGRADE",
                message=f"target.version {spec.target.version} is older than the running "
                f"{source_version}: a downgrade{fix}",
            )
        )
    elif target[0] != source[0] or target[1] - source[1] > max_jump:
        jump = _COUNT_WORDS.get(max_jump, str(max_jump))
        findings.append(
            Finding(
                severity=severity,
                code="SKEW",
                message=f"target.version {spec.target.version} is more than {jump} minor "
                f"versions ahead of {source_version}; a canary upgrade may jump at most {jump} "
                f"minors — upgrade in steps{fix}",
            )
        )
    if target[:2] != source[:2] and target > source:
        findings.append(
            Finding(
                severity="info",
                code="COMPATIBILITY_VERSION",
                message=f"{spec.target.version} may change defaults of {source[0]}.{source[1]}: "
                f"to keep them, render the bundle with --set compatibilityVersion="
                f"{source[0]}.{source[1]} and remove it once the behaviour is checked",
            )
        )


def _support_checks(
    spec: UpgradeSpec, inventory: ClusterInventory, findings: list[Finding]
) -> None:
    """What Istio's support statement (as discovery recorded it) says about this cluster.

    Silent on inventories recorded before discovery read it: their upgrades plan as before.
    """
    support = inventory.support
    if support is None:
        return
    target = parse_version(spec.target.version)
    target_minor = f"{target[0]}.{target[1]}"
    if inventory.kubernetes_version is not None:
        kube_minor = minor_of(inventory.kubernetes_version)
        supported = support.kubernetes.get(target_minor)
        if supported is None:
            findings.append(
                Finding(
                    severity="info",
                    code="NO_SUPPORT_DATA",
                    message=f"no support data for Istio {target_minor}: Kubernetes "
                    f"{inventory.kubernetes_version} is not checked against it (add it to "
                    "istio_upgrade/istio/data/support.yaml)",
                )
            )
        elif kube_minor is not None:
            known = [m for m in (minor_of(v) for v in supported) if m is not None]
            shown = f"{supported[0]} to {supported[-1]}"
            if known and kube_minor < min(known):
                # A warning, as istioctl's precheck has it (it only logs below its minimum).
                findings.append(
                    Finding(
                        severity="warning",
                        code="KUBERNETES_TOO_OLD",
                        message=f"Istio {target_minor} supports Kubernetes {shown}; this cluster "
                        f"runs {inventory.kubernetes_version}, older than supported: upgrade "
                        "Kubernetes first",
                    )
                )
            elif known and kube_minor > max(known):
                findings.append(
                    Finding(
                        severity="warning",
                        code="KUBERNETES_NOT_SUPPORTED",
                        message=f"Istio {target_minor} supports Kubernetes {shown}; this cluster "
                        f"runs {inventory.kubernetes_version}, newer than supported: it usually "
                        "works, but is not covered by Istio's support statement",
                    )
                )
    if inventory.gateway_api_version is not None:
        findings.append(
            Finding(
                severity="info",
                code="GATEWAY_API_IN_USE",
                message=f"Gateway API CRDs at {inventory.gateway_api_version}: check that Istio "
                f"{target_minor} supports that version before the gateways migrate (istio.io "
                "release notes list the Gateway API version of each release)",
            )
        )
    ambient_in_use = inventory.ambient or any(
        ns.labels.get("istio.io/dataplane-mode") == "ambient" for ns in inventory.namespaces
    )
    if ambient_in_use and spec.installer.strategy == "sail":
        # The operator's IstioCNI/ZTunnel are upgraded in place after the control plane, at
        # promote, and the precheck refuses a jump of more than one minor (activities/sail.py).
        findings.append(
            Finding(
                severity="info",
                code="AMBIENT_BY_SAIL",
                message=f"ambient components ({'; '.join(inventory.ambient) or 'namespaces'}) "
                "are upgraded through their IstioCNI/ZTunnel resources once the tags move to "
                f"the new revision (at most {support.ambient_max_minor_jump} minor ahead)",
            )
        )
    elif ambient_in_use:
        ambient_ns = sorted(
            ns.name
            for ns in inventory.namespaces
            if ns.labels.get("istio.io/dataplane-mode") == "ambient"
        )
        findings.append(
            Finding(
                severity="error",
                code="AMBIENT_NOT_SUPPORTED",
                message="ambient mode is in use ("
                + "; ".join(
                    [*inventory.ambient]
                    + ([f"namespaces {', '.join(ambient_ns[:10])}"] if ambient_ns else [])
                )
                + "): ztunnel and istio-cni are upgraded in place, not canaried, support "
                f"control plane 1.x and 1.x+{support.ambient_max_minor_jump} only and keep "
                "their istiod as xDS/CA endpoint, which this upgrade would remove; follow "
                "istio.io's ambient upgrade procedure (Upgrade with Helm: istiod, then "
                "istio-cni, then ztunnel, one minor at a time)",
            )
        )
    managed = [ns for ns in inventory.namespaces if ns.managed_by]
    for tool in sorted({ns.managed_by for ns in managed if ns.managed_by}):
        names = sorted(ns.name for ns in managed if ns.managed_by == tool)
        findings.append(
            Finding(
                severity="warning",
                code="GITOPS_OWNED_NAMESPACES",
                message=f"namespaces managed by {tool}: {', '.join(names[:10])}"
                + (f" and {len(names) - 10} more" if len(names) > 10 else "")
                + ": self-heal reverts the istio.io/rev labels this upgrade sets (the upgrade "
                "then holds, naming them); pause self-heal for them during the upgrade, or "
                "change their labels in Git",
            )
        )
    for rev in inventory.revisions:
        if rev.helm_release and rev.installed_by is None:
            findings.append(
                Finding(
                    severity="warning",
                    code="HELM_RELEASE",
                    message=f"revision {rev.name} is the Helm release {rev.helm_release}: once "
                    "this upgrade removes it, the release is stale (helm list still shows it); "
                    f"run helm uninstall for it afterwards, and install later revisions "
                    "from rendered bundles or adopt them into a release",
                )
            )
    if inventory.envoy_filter_count:
        shown = ", ".join(inventory.envoy_filters[:10])
        more = inventory.envoy_filter_count - min(10, len(inventory.envoy_filters))
        findings.append(
            Finding(
                severity="warning",
                code="ENVOY_FILTERS",
                message=f"{inventory.envoy_filter_count} EnvoyFilter(s) bind to Envoy's internals "
                f"and may break with the {spec.target.version} proxy: {shown}"
                + (f" and {more} more" if more > 0 else "")
                + "; check each against the new version (a workloadSelector or proxyVersion "
                "match keeps one on the old proxies)",
            )
        )


def _namespace_checks(
    inventory: ClusterInventory, selected: set[str], findings: list[Finding]
) -> None:
    for ns in inventory.namespaces:
        if LABEL_INJECTION in ns.labels and LABEL_REV in ns.labels:
            findings.append(
                Finding(
                    severity="error" if ns.name in selected else "warning",
                    code="IST0123",
                    namespace=ns.name,
                    message=f"namespace {ns.name!r} has both istio-injection and istio.io/rev "
                    "labels (IST0123); remove one before upgrading",
                )
            )
        if ns.name not in selected:
            continue
        configs = injecting_configurations(ns.labels, inventory.webhooks)
        if len(configs) > 1:
            findings.append(
                Finding(
                    severity="error",
                    code="OVERLAPPING_WEBHOOKS",
                    namespace=ns.name,
                    message=f"namespace {ns.name!r} is matched by several injector webhooks "
                    f"({', '.join(sorted(configs))}); remove the overlapping configuration",
                )
            )
        for workload in ns.workloads:
            if workload.paused:
                findings.append(
                    Finding(
                        severity="error",
                        code="ROLLOUT_PAUSED",
                        namespace=ns.name,
                        message=f"{ns.name}/{workload.kind}/{workload.name} has a paused rollout: "
                        "a restart would never roll its pods; resume it (kubectl rollout resume "
                        f"-n {ns.name} deployment/{workload.name}) or exclude the namespace",
                    )
                )
            injected = [p for p in workload.pods if p.injected_revision and p.active]
            if not workload.restartable and injected:
                findings.append(
                    Finding(
                        severity="warning",
                        code="NON_RESTARTABLE",
                        namespace=ns.name,
                        message=f"{ns.name}/{workload.kind}/{workload.name} has sidecars but "
                        + (
                            "is not restarted by this tool (its controller is not one it knows); "
                            "it is left out of verification and keeps its old proxy until its "
                            "owner restarts it"
                            if workload.kind not in RESTARTABLE_KINDS | {"Pod", "Job", "CronJob"}
                            else "cannot be restarted; it keeps its old proxy until it is recreated"
                        ),
                    )
                )


def _tags_to_move(spec: UpgradeSpec, inventory: ClusterInventory, source: str) -> list[str]:
    tags = list(dict.fromkeys(spec.promote.tags))
    if spec.promote.follow_source_tags:
        tags += sorted(t for t, r in inventory.tags.items() if r == source and t not in tags)
    return tags


def _per_workload_moves(ns: NamespaceInfo, source: str) -> list[WorkloadRevision]:
    """Workloads of an unlabelled namespace that opt in by their pod labels, on ``source``.

    The Helm gateway chart's shape: ``sidecar.istio.io/inject: "true"`` (served by the
    ``default`` tag's ``object.`` webhook) or ``istio.io/rev`` on the pod template (the
    revision webhooks' ``rev.object.`` webhook); neither needs a namespace label.
    """
    return [
        WorkloadRevision(namespace=ns.name, kind=w.kind, name=w.name, revision=w.template_revision)
        for w in ns.workloads
        if w.restartable
        and (w.opt_in or w.template_revision is not None)
        and w.revisions.get(source, 0) > 0
    ]


def _gateway_owner(gateway: GatewayInfo, ns: NamespaceInfo, tags: dict[str, str]) -> str:
    """The revision whose istiod deploys a Gateway (``pilot/pkg/config/kube/gateway``
    ``IsMine``): its own ``istio.io/rev``, else its namespace's, else the ``default`` tag."""
    value = gateway.revision_label or ns.labels.get(LABEL_REV) or ""
    if value:
        return tags.get(value, value)
    return tags.get(DEFAULT_TAG, DEFAULT_TAG)


def _gateway_moves(
    inventory: ClusterInventory, ns: NamespaceInfo, source: str
) -> list[WorkloadRevision]:
    """Gateways of ``ns`` on the source revision.

    Each gets ``istio.io/rev=<target>`` of its own in the gateway batch, even where its
    namespace's relabel would carry it: the move then waits for istiod's re-render and
    happens with the other gateways, last. After promote it gets its own label back.
    """
    return [
        WorkloadRevision(
            namespace=ns.name,
            kind="Gateway",
            name=gw.name,
            revision=gw.revision_label,
            deployment=gw.deployment,
        )
        for gw in inventory.gateways
        if gw.namespace == ns.name and _gateway_owner(gw, ns, inventory.tags) == source
    ]


def plan_upgrade(
    inventory: ClusterInventory, spec: UpgradeSpec, upgrade_id: str, *, per_workload: bool = False
) -> tuple[Plan, PrecheckReport]:
    """Compute the batches and precheck the cluster.

    Args:
        inventory: What discovery found.
        spec: The validated upgrade spec.
        upgrade_id: The workflow id, to recognise a target revision installed by an earlier
            attempt of this same upgrade.
        per_workload: Also migrate workloads opted in per pod in unlabelled namespaces
            (upgrades recorded before this existed planned without them).

    Returns:
        The plan (possibly without batches) and the findings; the upgrade may start only when
        ``report.ok``.
    """
    findings: list[Finding] = []
    target = spec.target_revision
    source = spec.source_revision or source_revision_of(inventory, target)
    source_info = inventory.revision(source) if source else None
    if source is None:
        findings.append(
            Finding(
                severity="error",
                code="NO_SOURCE_REVISION",
                message="no installed Istio revision found to upgrade from; set source_revision",
            )
        )
        source = ""
    elif source_info is None:
        installed = ", ".join(r.name for r in inventory.revisions) or "none"
        findings.append(
            Finding(
                severity="error",
                code="SOURCE_NOT_INSTALLED",
                message=f"source_revision {source!r} is not installed (installed: {installed}); "
                "fix source_revision or omit it to discover it",
            )
        )
    source_version = source_info.version if source_info else None
    if source_info is not None:
        _minor_skew(spec, inventory, source_version, findings)
    _support_checks(spec, inventory, findings)

    report = PrecheckReport()
    target_info = inventory.revision(target)
    if target_info is not None:
        report.target_installed = True
        if target_info.installed_by == upgrade_id:
            report.resumed = True
            findings.append(
                Finding(
                    severity="info",
                    code="TARGET_FROM_EARLIER_ATTEMPT",
                    message=f"revision {target} was installed by an earlier attempt of this "
                    "upgrade; installing it again changes nothing",
                )
            )
        else:
            findings.append(
                Finding(
                    severity="warning" if spec.force else "error",
                    code="TARGET_ALREADY_INSTALLED",
                    message=f"target revision {target} is already installed and was not "
                    "installed by this upgrade; set target.revision to a new name"
                    + ("" if spec.force else " or force: true to adopt it"),
                )
            )

    selected = _selected(inventory, spec)
    excluded: dict[str, str] = {}
    migratable: dict[str, NamespaceInfo] = {}
    moves: dict[str, list[WorkloadRevision]] = {}
    relabelled: set[str] = set()
    for ns in selected:
        reason = _exclusion(ns, source, target)
        if reason is None:
            relabelled.add(ns.name)
        if per_workload and ns.name not in _NEVER_MIGRATE:
            found = _gateway_moves(inventory, ns, source)
            if reason is not None and ns.effective_revision is None:
                found = _per_workload_moves(ns, source) + found
            if found:
                moves[ns.name] = found
                reason = None
        if reason is None:
            migratable[ns.name] = ns
        else:
            excluded[ns.name] = reason
    for name in spec.migration.canary:
        if name not in migratable:
            why = excluded.get(name, "does not exist or is not selected")
            findings.append(
                Finding(
                    severity="error",
                    code="CANARY_NOT_MIGRATABLE",
                    namespace=name,
                    message=f"migration.canary: namespace {name!r} cannot be the canary: {why}",
                )
            )
    _namespace_checks(inventory, set(migratable), findings)

    gateway_names = [
        n
        for n, ns in migratable.items()
        if ns.gateway or any(w.kind == "Gateway" for w in moves.get(n, []))
    ]
    if spec.migration.batches is not None:
        groups = _explicit_batches(spec, inventory, migratable, excluded, findings)
        gateway_batch: list[str] = []
    else:
        ordinary = sorted(
            n for n in migratable if not (spec.migration.gateways_last and n in gateway_names)
        )
        groups = _auto_batches(ordinary, spec)
        gateway_batch = sorted(gateway_names) if spec.migration.gateways_last else []

    def originals(group: list[str]) -> list[NamespaceLabels]:
        return [_labels_of(migratable[n]) for n in group if n in relabelled]

    def workloads(group: list[str]) -> list[WorkloadRevision]:
        return [w for n in group for w in moves.get(n, [])]

    batches = [
        Batch(
            index=i,
            namespaces=group,
            canary=i == 0,
            original_labels=originals(group),
            workloads=workloads(group),
        )
        for i, group in enumerate(groups)
    ]
    if gateway_batch:
        batches.append(
            Batch(
                index=len(batches),
                namespaces=gateway_batch,
                gateway=True,
                canary=not batches,
                original_labels=originals(gateway_batch),
                workloads=workloads(gateway_batch),
            )
        )
    if not batches and not any(f.code.startswith("BATCH_") for f in findings):
        findings.append(
            Finding(
                severity="error",
                code="EMPTY_SELECTION",
                message="migration selects no namespace on the source revision "
                f"({source or 'unknown'}); check migration.selector, include and exclude",
            )
        )
    plan = Plan(
        cluster=spec.cluster.name,
        source_revision=source,
        source_version=source_version,
        target_revision=target,
        target_version=spec.target.version,
        batches=batches,
        excluded=[ExcludedNamespace(namespace=n, reason=r) for n, r in sorted(excluded.items())],
        tags_to_move=_tags_to_move(spec, inventory, source) if source else [],
    )
    report.findings = findings
    return plan, report
