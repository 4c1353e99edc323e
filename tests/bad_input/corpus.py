"""The corpus: invalid upgrade specs, SLOs and sandbox scenarios, each with what its error must say.

Every case is a whole document (a valid base with one thing wrong), the dotted/JSON paths its
error must name (``migration.batches[0]``, ``gate.slos[0].objective``) and words of the fix
it must give. The same spec cases run through the three entry points — the model, the CLI's
spec file and the workflow started with a raw JSON object — so a message that is clear in one
place and vague in another is caught.
"""

from __future__ import annotations

import copy
import itertools
import math
import re
from dataclasses import dataclass, field
from typing import Any

import pytest

from istio_upgrade.devenv.bundles import revision_bundle

DROP = object()
"""A value meaning "remove this key" in :func:`edit`."""

_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def _parts(path: str) -> list[str | int]:
    return [name if name else int(index) for name, index in _PART.findall(path)]


def edit(doc: Any, path: str, value: Any) -> None:
    """Set ``path`` (``gate.slos[0].objective``) in ``doc`` to ``value``; DROP removes it."""
    parts = _parts(path)
    node = doc
    for part, following in itertools.pairwise(parts):
        if isinstance(part, int):
            node = node[part]
        else:
            if part not in node or not isinstance(node[part], dict | list):
                node[part] = [] if isinstance(following, int) else {}
            node = node[part]
    last = parts[-1]
    if value is DROP:
        del node[last]
    elif isinstance(last, int) and last == len(node):
        node.append(value)
    else:
        node[last] = value


@dataclass(frozen=True)
class Case:
    """One invalid document and what its refusal must say."""

    id: str
    doc: Any
    fields: tuple[str, ...]
    """Paths the message must name."""
    fix: tuple[str, ...]
    """Words of the fix the message must contain."""
    secret: str | None = None
    """Text of the input that must never be echoed (credentials)."""
    marks: tuple[Any, ...] = field(default=())


def param(case: Case) -> Any:
    """The case as a pytest parameter with its id and marks."""
    return pytest.param(case, id=case.id, marks=case.marks)


# -- UpgradeSpec ---------------------------------------------------------------------------

BUNDLE = revision_bundle("1.31.0", "1-31-0")

BASE_SPEC: dict[str, Any] = {
    "cluster": {"name": "demo", "context": "sandbox", "prometheus_url": "http://127.0.0.1:9"},
    "target": {"version": "1.31.0"},
    "installer": {"bundle_yaml": BUNDLE},
    "migration": {
        "canary": ["frontend"],
        "growth_factor": 20,
        "max_batch_size": 20,
        "rollout_timeout_seconds": 30,
    },
    "gate": {
        "slos": [{"name": "availability", "objective": 0.99}],
        "warmup_seconds": 1,
        "soak_seconds": 4,
        "interval_seconds": 2,
        "max_soak_seconds": 12,
        "short_window_seconds": 4,
        "on_inconclusive": "proceed",
    },
    "cleanup": {"grace_seconds": 2},
}
"""A valid, real (not dry-run) upgrade of the sandbox's ``demo`` scenario: a case the
product wrongly accepted would start writing, and the zero-writes check would see it."""


def spec(*edits: tuple[str, Any]) -> dict[str, Any]:
    """:data:`BASE_SPEC` with each ``(path, value)`` edit applied."""
    doc = copy.deepcopy(BASE_SPEC)
    for path, value in edits:
        edit(doc, path, value)
    return doc


def case(
    id: str,
    edits: list[tuple[str, Any]] | dict[str, Any],
    fields: tuple[str, ...] | str,
    fix: tuple[str, ...] | str,
    *,
    secret: str | None = None,
) -> Case:
    doc = edits if isinstance(edits, dict) else spec(*edits)
    return Case(
        id,
        doc,
        (fields,) if isinstance(fields, str) else fields,
        (fix,) if isinstance(fix, str) else fix,
        secret,
    )


def names(count: int, prefix: str = "ns") -> list[str]:
    return [f"{prefix}-{i:05d}" for i in range(count)]


INF = math.inf
NAN = math.nan
NO_CANARY = ("migration.canary", DROP)
"""Explicit batches and ``canary`` exclude each other; cases about batches drop the canary."""

WRONG_TYPES = [
    case("cluster-name-int", [("cluster.name", 123)], "cluster.name", "valid string"),
    case("version-yaml-float", [("target.version", 1.24)], "target.version", "quote"),
    case("cluster-name-yaml-bool", [("cluster.name", False)], "cluster.name", "quote"),
    case("batch-size-word", [("migration.max_batch_size", "ten")], "migration.max_batch_size",
         "valid integer"),
    case("batch-size-fraction", [("migration.max_batch_size", 2.5)],
         "migration.max_batch_size", "valid integer"),
    case("include-not-a-list", [("migration.include", "frontend")], "migration.include",
         "valid list"),
    case("batch-not-a-list", [NO_CANARY, ("migration.batches", [["frontend"], "backend"])],
         "migration.batches[1]", "valid list"),
    case("dry-run-word", [("dry_run", "maybe")], "dry_run", "valid boolean"),
    case("objective-word", [("gate.slos[0].objective", "high")], "gate.slos[0].objective",
         "valid number"),
    case("gate-list", [("gate", [])], "gate", "valid dictionary"),
    case("cluster-string", [("cluster", "demo")], "cluster", "valid dictionary"),
    case("approval-mapping", [("approvals.before_promote", {"yes": True})],
         "approvals.before_promote", "valid boolean"),
    case("grace-list", [("cleanup.grace_seconds", [])], "cleanup.grace_seconds", "valid number"),
    case("tags-string", [("promote.tags", "default")], "promote.tags", "valid list"),
    case("sli-template-int", [("gate.slos[0].sli", {"template": 7})], "gate.slos[0].sli",
         "istio-availability"),
]  # fmt: skip

UNKNOWN_FIELDS = [
    case("unknown-top", [("colour", "red")], "colour", "remove it or check its spelling"),
    case("unknown-typo-batch-size", [("migration.batch_size", 5)], "migration.batch_size",
         ("remove it or check its spelling", "max_batch_size")),
    case("unknown-typo-objective", [("gate.slos[0].objectve", 0.999)],
         "gate.slos[0].objectve", ("remove it or check its spelling", "objective")),
    case("unknown-cluster-namespace", [("cluster.namespace", "istio-system")],
         "cluster.namespace", "remove it or check its spelling"),
    case("unknown-target-tag", [("target.tag", "1.31.0")], "target.tag",
         "remove it or check its spelling"),
    case("unknown-configmap-keys",
         [("installer", {"bundle_configmap": {"namespace": "istio-system", "name": "b",
                                              "keys": "x"}})],
         "installer.bundle_configmap.keys", ("remove it or check its spelling", "key")),
    case("unknown-in-latency-sli",
         [("gate.slos[0].sli", {"template": "istio-latency", "threshold_ms": 250,
                                "percentile": 99})],
         "gate.slos[0].sli.percentile", "remove it or check its spelling"),
    case("unknown-wrong-section", [("rollback.keep_old_revision", True)],
         "rollback.keep_old_revision", ("remove it or check its spelling", "keep_new_revision")),
    case("unknown-capitalised", [("Cluster", {"name": "demo"}), ("cluster", DROP)],
         ("Cluster", "cluster"), ("remove it or check its spelling", "required")),
]  # fmt: skip

MISSING = [
    case("missing-cluster", [("cluster", DROP)], "cluster", "required"),
    case("missing-target", [("target", DROP)], "target", "required"),
    case("missing-version", [("target", {})], "target.version", "required"),
    case("missing-cluster-name", [("cluster", {"context": "sandbox"})], "cluster.name",
         "required"),
    case("empty-spec", {}, ("cluster", "target"), "required"),
    case("missing-slo-name", [("gate.slos", [{"objective": 0.99}])], "gate.slos[0].name",
         "required"),
    case("missing-latency-threshold", [("gate.slos[0].sli", {"template": "istio-latency"})],
         "gate.slos[0].sli.threshold_ms", "required"),
    case("missing-configmap-name",
         [("installer", {"bundle_configmap": {"namespace": "istio-system"}})],
         "installer.bundle_configmap.name", "required"),
]  # fmt: skip

INJECTION = [
    case("cluster-shell", [("cluster.name", "foo; rm -rf /")], "cluster.name", "DNS-1123"),
    case("revision-subshell", [("target.revision", "$(id)")], "target.revision", "DNS-1123"),
    case("include-traversal", [("migration.include", ["../../etc"])], "migration.include[0]",
         "DNS-1123"),
    case("canary-newline", [("migration.canary", ["a\nb"])], "migration.canary[0]",
         "DNS-1123"),
    case("revision-trailing-newline", [("target.revision", "canary\n")], "target.revision",
         "DNS-1123"),
    case("cluster-trailing-newline", [("cluster.name", "demo\n")], "cluster.name", "DNS-1123"),
    case("exclude-trailing-newline", [("migration.exclude", ["kube-system\n"])],
         "migration.exclude[0]", "DNS-1123"),
    case("exclude-backticks", [("migration.exclude", ["kube-system", "x`id`"])],
         "migration.exclude[1]", "DNS-1123"),
    case("selector-quotes", [("migration.selector", 'app="web"')], "migration.selector",
         ("kubectl -l", "quotes")),
    case("selector-set-quotes", [("migration.selector", "app in ('a','b')")],
         "migration.selector", "kubectl -l"),
    case("selector-shell", [("migration.selector", "foo; rm -rf /")], "migration.selector",
         "kubectl -l"),
    case("selector-subshell", [("migration.selector", "team=$(id)")], "migration.selector",
         "kubectl -l"),
    case("selector-long-value", [("migration.selector", "app=" + "a" * 64)],
         "migration.selector", ("63", "kubectl -l")),
    case("selector-long-key", [("migration.selector", "a" * 64 + "=x")],
         "migration.selector", ("63", "kubectl -l")),
    case("tag-shell", [("promote.tags", ["canary; rm -rf /"])], "promote.tags[0]", "DNS-1123"),
    case("source-shell", [("source_revision", "1-30-3 || true")], "source_revision",
         "DNS-1123"),
    case("hub-shell", [("target.hub", "docker.io/istio; curl x | sh")], "target.hub",
         "registry"),
    case("configmap-traversal",
         [("installer", {"bundle_configmap": {"namespace": "istio-system",
                                              "name": "../../secrets"}})],
         "installer.bundle_configmap.name", "DNS-1123"),
    case("configmap-namespace-slash",
         [("installer", {"bundle_configmap": {"namespace": "istio-system/../kube-system",
                                              "name": "bundle"}})],
         "installer.bundle_configmap.namespace", "DNS-1123"),
    case("configmap-key-traversal",
         [("installer", {"bundle_configmap": {"namespace": "istio-system", "name": "bundle",
                                              "key": "../bundle.yaml"}})],
         "installer.bundle_configmap.key", "letters, digits"),
    case("bundle-path-traversal", [("installer", {"bundle_path": "../../etc/passwd"})],
         "installer.bundle_path", "'..'"),
    case("bundle-path-nul", [("installer", {"bundle_path": "/bundles/a\x00.yaml"})],
         "installer.bundle_path", "control characters"),
    case("crds-path-traversal", [("crds", {"bundle_path": "/bundles/../../root/.kube/config"})],
         "crds.bundle_path", "'..'"),
    case("context-newline", [("cluster.context", "sandbox\nuser: admin")], "cluster.context",
         "control characters"),
]  # fmt: skip

HUGE_VALUES = [
    case("max-batch-size-1e12", [("migration.max_batch_size", 10**12)],
         "migration.max_batch_size", "less than or equal to"),
    case("first-batch-size-1e12", [("migration.first_batch_size", 10**12)],
         "migration.first_batch_size", "less than or equal to"),
    case("growth-1e308", [("migration.growth_factor", 1e308)], "migration.growth_factor",
         "less than or equal to"),
    case("restarts-1e12", [("migration.max_concurrent_restarts", 10**12)],
         "migration.max_concurrent_restarts", "less than or equal to"),
    case("rollout-timeout-1e308", [("migration.rollout_timeout_seconds", 1e308)],
         "migration.rollout_timeout_seconds", "less than or equal to"),
    case("grace-1e308", [("cleanup.grace_seconds", 1e308)], "cleanup.grace_seconds",
         "less than or equal to"),
    case("soak-1e308", [("gate.soak_seconds", 1e308), ("gate.max_soak_seconds", 1e308)],
         ("gate.soak_seconds", "gate.max_soak_seconds"), "at most"),
    case("warmup-inf", [("gate.warmup_seconds", INF)], "gate.warmup_seconds", "at most"),
    case("interval-nanosecond", [("gate.interval_seconds", 1e-9)], "gate.interval_seconds",
         "at least 1"),
    case("query-timeout-1e308", [("gate.query_timeout_seconds", 1e308)],
         "gate.query_timeout_seconds", "at most"),
    case("z-threshold-inf", [("gate.z_threshold", INF)], "gate.z_threshold", "finite"),
    case("confirmations-1e12", [("gate.confirmations", 10**12)], "gate.confirmations",
         "max_soak_seconds"),
    case("warmup-negative", [("gate.warmup_seconds", -1)], "gate.warmup_seconds",
         "greater than or equal to 0"),
    case("rollout-timeout-negative", [("migration.rollout_timeout_seconds", -30)],
         "migration.rollout_timeout_seconds", "greater than 0"),
    case("soak-nan", [("gate.soak_seconds", NAN)], "gate.soak_seconds", "greater than or equal"),
    case("period-negative", [("gate.slos[0].period", "-5m")], "gate.slos[0].period",
         "not a duration"),
    case("objective-nan", [("gate.slos[0].objective", NAN)], "gate.slos[0].objective",
         "finite number"),
    case("objective-1e308", [("gate.slos[0].objective", 1e308)], "gate.slos[0].objective",
         "no error budget"),
    case("burn-threshold-inf", [("gate.slos[0].burn_rate_threshold", INF)],
         "gate.slos[0].burn_rate_threshold", "finite number"),
    case("max-soak-below-soak", [("gate.soak_seconds", 60), ("gate.max_soak_seconds", 30)],
         "gate.max_soak_seconds", "raise max_soak_seconds"),
    case("budget-fraction-2", [("gate.error_budget_fraction", 2)], "gate.error_budget_fraction",
         "less than or equal to 1"),
]  # fmt: skip

HUGE_LISTS = [
    case("batch-10000", [NO_CANARY, ("migration.batches", [names(10_000)])],
         "migration.batches[0]", "migration.selector"),
    case("batches-10000", [NO_CANARY, ("migration.batches", [[n] for n in names(10_000)])],
         "migration.batches", "migration.selector"),
    case("include-10000", [("migration.include", names(10_000))], "migration.include",
         "migration.selector"),
    case("exclude-10000", [("migration.exclude", names(10_000))], "migration.exclude",
         "migration.selector"),
    case("tags-1000", [("promote.tags", names(1_000, "t"))], "promote.tags", "at most"),
    case("slos-1000",
         [("gate.slos", [{"name": f"slo-{i}", "objective": 0.99} for i in range(1_000)])],
         "gate.slos", "at most"),
    case("inline-bundle-300k", [("installer", {"bundle_yaml": "#" * (300 * 1024)})],
         "installer.bundle_yaml", "bundle_path"),
]  # fmt: skip

UNICODE = [
    case("revision-rtl-mark", [("target.revision", "1-31-0\u200f")], "target.revision",
         "DNS-1123"),
    case("revision-emoji", [("target.revision", "1-24-\U0001f680")], "target.revision",
         "DNS-1123"),
    case("revision-homoglyph", [("target.revision", "1-31-0-\u0441\u0430nary")],
         "target.revision", "DNS-1123"),
    case("cluster-fullwidth", [("cluster.name", "\uff50rod")], "cluster.name", "DNS-1123"),
    case("version-fullwidth-digit", [("target.version", "1.24.\uff12")], "target.version",
         "like 1.31.0"),
    case("version-arabic-digits", [("target.version", "\u0661.\u0662\u0664.\u0662")],
         "target.version", "like 1.31.0"),
    case("canary-zero-width", [("migration.canary", ["front\u200bend"])],
         "migration.canary[0]", "DNS-1123"),
    case("selector-accent", [("migration.selector", "app=w\u00e9b")], "migration.selector",
         "kubectl -l"),
    case("tag-rtl-override", [("promote.tags", ["\u202ecanary"])], "promote.tags[0]",
         "DNS-1123"),
    case("context-rtl-override", [("cluster.context", "prod\u202e")], "cluster.context",
         "control characters"),
    case("slo-name-emoji", [("gate.slos[0].name", "avail\U0001f525")], "gate.slos[0].name",
         "letters, digits"),
    case("hub-homoglyph", [("target.hub", "dock\u0435r.io/istio")], "target.hub", "registry"),
]  # fmt: skip

LONG_NAMES = [
    case("revision-64", [("target.revision", "r" + "1" * 63)], "target.revision", "DNS-1123"),
    case("revision-57", [("target.revision", "r" * 57)], "target.revision", ("56", "istiod-")),
    case("version-long-prerelease", [("target.version", "1.31.0-" + "a" * 60)],
         "target.version", "target.revision"),
    case("cluster-64", [("cluster.name", "c" * 64)], "cluster.name", "DNS-1123"),
    case("namespace-64", [("migration.include", ["n" * 64])], "migration.include[0]",
         "DNS-1123"),
    case("tag-44", [("promote.tags", ["t" * 44])], "promote.tags[0]",
         ("43", "istiod-revision-tag-")),
    case("source-57", [("source_revision", "s" * 57)], "source_revision", "56"),
    case("revision-default", [("target.revision", "default")], "target.revision", "reserved"),
    case("revision-uppercase", [("target.revision", "Canary")], "target.revision", "DNS-1123"),
    case("revision-leading-dash", [("target.revision", "-canary")], "target.revision",
         "DNS-1123"),
    case("revision-dots", [("target.revision", "1.31.0")], "target.revision", "DNS-1123"),
    case("revision-empty", [("target.revision", "")], "target.revision", "DNS-1123"),
    case("configmap-name-254",
         [("installer", {"bundle_configmap": {"namespace": "istio-system", "name": "a" * 254}})],
         "installer.bundle_configmap.name", "253"),
]  # fmt: skip

SECRET = "hunter2-s3cr3t"
URLS = [
    case("prom-credentials-gate", [("gate.prometheus_url", f"http://admin:{SECRET}@prom:9090")],
         "gate.prometheus_url", "credentials", secret=SECRET),
    case("prom-credentials-cluster",
         [("cluster.prometheus_url", f"https://u:{SECRET}@prom:9090")],
         "cluster.prometheus_url", "credentials", secret=SECRET),
    case("prom-token-as-user", [("cluster.prometheus_url", f"http://{SECRET}@prom:9090")],
         "cluster.prometheus_url", "credentials", secret=SECRET),
    case("prom-token-in-query", [("cluster.prometheus_url", f"http://prom:9090/?token={SECRET}")],
         "cluster.prometheus_url", "query", secret=SECRET),
    case("prom-ftp", [("cluster.prometheus_url", "ftp://prom:9090")], "cluster.prometheus_url",
         "http://"),
    case("prom-file", [("gate.prometheus_url", "file:///etc/passwd")], "gate.prometheus_url",
         "http://"),
    case("prom-javascript", [("cluster.prometheus_url", "javascript:alert(1)")],
         "cluster.prometheus_url", "http://"),
    case("prom-no-scheme", [("cluster.prometheus_url", "prom:9090")], "cluster.prometheus_url",
         "http://"),
    case("prom-no-host", [("cluster.prometheus_url", "http://")], "cluster.prometheus_url",
         "host"),
    case("prom-bad-port", [("cluster.prometheus_url", "http://prom:99999")],
         "cluster.prometheus_url", "port"),
    case("prom-fragment", [("gate.prometheus_url", "http://prom:9090/#graph")],
         "gate.prometheus_url", "fragment"),
    case("prom-space", [("cluster.prometheus_url", "http://prom 9090")],
         "cluster.prometheus_url", "whitespace"),
    case("prom-newline", [("cluster.prometheus_url", "http://prom:9090\n")],
         "cluster.prometheus_url", "whitespace"),
    case("prom-api-path", [("cluster.prometheus_url", "http://prom:9090/api/v1/query")],
         "cluster.prometheus_url", "base URL"),
]  # fmt: skip

CROSS_FIELD = [
    case("source-equals-target", [("source_revision", "1-31-0")], "source_revision",
         "new revision"),
    case("canary-with-batches", [("migration.batches", [["frontend"]])], "migration",
         "first of migration.batches"),
    case("namespace-twice-in-batches", [NO_CANARY, ("migration.batches", [["a"], ["a"]])],
         "migration.batches[1]", "list each namespace once"),
    case("empty-batch", [NO_CANARY, ("migration.batches", [["a"], []])],
         "migration.batches[1]", "remove it"),
    case("two-bundle-sources", [("installer", {"bundle_path": "/b.yaml", "bundle_yaml": "---"})],
         "installer", "only one of"),
    case("installer-helm", [("installer.strategy", "helm")], "installer.strategy", "manifests"),
    case("duplicate-slo-names",
         [("gate.slos", [{"name": "a", "objective": 0.99}, {"name": "a", "objective": 0.9}])],
         "gate.slos", "rename one"),
]  # fmt: skip

SPEC_CASES: list[Case] = [
    *WRONG_TYPES,
    *UNKNOWN_FIELDS,
    *MISSING,
    *INJECTION,
    *HUGE_VALUES,
    *HUGE_LISTS,
    *UNICODE,
    *LONG_NAMES,
    *URLS,
    *CROSS_FIELD,
]


# -- SLOs ----------------------------------------------------------------------------------

BASE_SLO: dict[str, Any] = {"name": "availability", "objective": 0.999, "period": "30d"}


def slo_case(
    id: str, edits: list[tuple[str, Any]], fields: str, fix: tuple[str, ...] | str
) -> Case:
    doc = copy.deepcopy(BASE_SLO)
    for path, value in edits:
        edit(doc, path, value)
    return Case(id, doc, (fields,), (fix,) if isinstance(fix, str) else fix)


SLO_CASES: list[Case] = [
    slo_case("objective-1", [("objective", 1)], "objective", "no error budget"),
    slo_case("objective-0", [("objective", 0)], "objective", "above 0"),
    slo_case("objective-percent", [("objective", 99.9)], "objective", "0.999"),
    slo_case("objective-nan", [("objective", NAN)], "objective", "finite number"),
    slo_case("objective-word", [("objective", "99.9%")], "objective", "valid number"),
    slo_case("period-words", [("period", "30days")], "period", "not a duration"),
    slo_case("period-zero", [("period", "0s")], "period", "longer than 0s"),
    slo_case("period-negative", [("period", "-30d")], "period", "not a duration"),
    slo_case("period-number", [("period", 30)], "period", "quote"),
    slo_case("latency-off-bucket", [("sli", {"template": "istio-latency", "threshold_ms": 123})],
             "sli.threshold_ms", "100 or 250"),
    slo_case("custom-no-placeholders",
             [("sli", {"template": "custom", "error_query": "sum(rate(x[5m]))",
                       "total_query": "sum(rate(y[5m]))"})],
             "sli.error_query", "{{namespaces}}"),
    slo_case("template-unknown", [("sli", {"template": "istio-errors"})], "sli",
             "istio-availability"),
    slo_case("burn-zero", [("burn_rate_threshold", 0)], "burn_rate_threshold", "greater than 0"),
    slo_case("burn-inf", [("burn_rate_threshold", INF)], "burn_rate_threshold", "finite number"),
    slo_case("window-words",
             [("alerts", [{"severity": "page", "burn_rate": 14.4, "long_window": "1 hour",
                           "short_window": "5m"}])],
             "alerts[0].long_window", "not a duration"),
    slo_case("window-short-longer",
             [("alerts", [{"severity": "page", "burn_rate": 14.4, "long_window": "5m",
                           "short_window": "1h"}])],
             "alerts[0].short_window", "shorter than long_window"),
    slo_case("label-key-space", [("labels", {"bad key": "x"})], "labels", "label name"),
    slo_case("label-key-reserved", [("labels", {"__name__": "x"})], "labels", "label name"),
    slo_case("label-key-slo", [("labels", {"slo": "x"})], "labels", "slo"),
    slo_case("grpc-status-99", [("sli", {"template": "istio-availability",
                                         "grpc_failure_statuses": [99]})],
             "sli.grpc_failure_statuses[0]", "less than or equal to 16"),
    slo_case("name-space", [("name", "my slo")], "name", "letters, digits"),
    slo_case("name-newline", [("name", "avail\n")], "name", "letters, digits"),
    slo_case("unknown-objectve", [("objectve", 0.9)], "objectve",
             ("remove it or check its spelling", "objective")),
    slo_case("budget-fraction-0", [("error_budget_fraction", 0)], "error_budget_fraction",
             "greater than 0"),
    slo_case("reporter-both", [("reporter", "both")], "reporter", "'destination' or 'source'"),
]  # fmt: skip


# -- Sandbox scenarios ---------------------------------------------------------------------

BASE_SCENARIO: dict[str, Any] = {
    "name": "bad-input",
    "revisions": [{"version": "1.30.3"}],
    "namespaces": [
        {
            "name": "app",
            "labels": {"istio.io/rev": "1-30-3"},
            "workloads": [{"name": "web", "rps": 1}],
        }
    ],
}


def scenario_case(
    id: str, edits: list[tuple[str, Any]], fields: str, fix: tuple[str, ...] | str, **kw: Any
) -> Case:
    doc = copy.deepcopy(BASE_SCENARIO)
    for path, value in edits:
        edit(doc, path, value)
    return Case(id, doc, (fields,), (fix,) if isinstance(fix, str) else fix, **kw)


WORKLOAD = "namespaces[0].workloads[0]"

SCENARIO_CASES: list[Case] = [
    scenario_case("unknown-top", [("namespace", [])], "namespace",
                  ("remove it or check its spelling", "namespaces")),
    scenario_case("unknown-workload-field", [(f"{WORKLOAD}.replica", 2)], f"{WORKLOAD}.replica",
                  ("remove it or check its spelling", "replicas")),
    scenario_case("no-revisions", [("revisions", [])], "revisions", "at least 1"),
    scenario_case("missing-name", [("name", DROP)], "name", "required"),
    scenario_case("revision-version", [("revisions[0].version", "1.24")],
                  "revisions[0].version", "like 1.31.0"),
    scenario_case("revision-default", [("revisions[0].revision", "default")],
                  "revisions[0].revision", 'revision: ""'),
    scenario_case("revision-string", [("revisions", ["1.30.3"])], "revisions[0]",
                  "valid dictionary"),
    scenario_case("namespace-underscore", [("namespaces[0].name", "Bad_NS")],
                  "namespaces[0].name", "DNS-1123"),
    scenario_case("namespace-64", [("namespaces[0].name", "n" * 64)], "namespaces[0].name",
                  "DNS-1123"),
    scenario_case("namespace-newline", [("namespaces[0].name", "a\nb")], "namespaces[0].name",
                  "DNS-1123"),
    scenario_case("namespace-shell", [("namespaces[0].name", "app; rm -rf /")],
                  "namespaces[0].name", "DNS-1123"),
    scenario_case("replicas-negative", [(f"{WORKLOAD}.replicas", -1)], f"{WORKLOAD}.replicas",
                  "greater than or equal to 0"),
    scenario_case("replicas-1e12", [(f"{WORKLOAD}.replicas", 10**12)], f"{WORKLOAD}.replicas",
                  "less than or equal to 1000"),
    scenario_case("error-ratio-1.5", [(f"{WORKLOAD}.error_ratio", 1.5)],
                  f"{WORKLOAD}.error_ratio", "less than or equal to 1"),
    scenario_case("kind-cronjob", [(f"{WORKLOAD}.kind", "CronJob")], f"{WORKLOAD}.kind",
                  "'Deployment'"),
    scenario_case("ondelete-deployment", [(f"{WORKLOAD}.update_strategy", "OnDelete")],
                  f"{WORKLOAD}.update_strategy", ("StatefulSet", "RollingUpdate")),
    scenario_case("paused-daemonset", [(f"{WORKLOAD}.kind", "DaemonSet"),
                                       (f"{WORKLOAD}.paused", True)],
                  f"{WORKLOAD}.paused", "remove paused"),
    scenario_case("revision-without-helm-gateway", [(f"{WORKLOAD}.revision", "1-30-3")],
                  f"{WORKLOAD}.revision", "helm_gateway: true"),
    scenario_case("tag-to-missing-revision", [("tags", {"canary": "9-9-9"})], "tags.canary",
                  "add it under revisions"),
    scenario_case("rev-label-nowhere", [("namespaces[0].labels", {"istio.io/rev": "ghost"})],
                  "namespaces[0].labels.istio.io/rev", "add it under revisions or tags"),
    scenario_case("call-to-nowhere", [(f"{WORKLOAD}.calls", ["ghost"])],
                  f"{WORKLOAD}.calls[0]", "define workload"),
    scenario_case("generate-zero", [("generate", [{"prefix": "g", "count": 0}])],
                  "generate[0].count", "greater than or equal to 1"),
    scenario_case("generate-1e12", [("generate", [{"prefix": "g", "count": 10**12}])],
                  "generate[0].count", "less than or equal to 100000"),
    scenario_case("duplicate-namespace",
                  [("namespaces[1]", {"name": "app"})], "namespaces[1]", "must be unique"),
    scenario_case("istio-system", [("namespaces[1]", {"name": "istio-system"})],
                  "namespaces[1]", "remove it"),
    scenario_case("cluster-name-space", [("cluster_name", "Bad Cluster")], "cluster_name",
                  "DNS-1123"),
    scenario_case("timings-unknown", [("timings", {"pod_start": 1})], "timings.pod_start",
                  ("remove it or check its spelling", "pod_start_s")),
    scenario_case("fault-kind", [("faults", {"api": [{"kind": "boom"}]})], "faults.api[0].kind",
                  "'status'"),
    scenario_case("gateway-class", [("namespaces[0].gateways", [{"name": "gw",
                                                                 "class": "nginx"}])],
                  "namespaces[0].gateways[0].class", "'istio'"),
    scenario_case("gateway-port", [("namespaces[0].gateways", [{"name": "gw", "port": 70000}])],
                  "namespaces[0].gateways[0].port", "less than or equal to 65535"),
    scenario_case("injection-yes", [("namespaces[0].labels", {"istio-injection": "yes"})],
                  "namespaces[0].labels.istio-injection", "'enabled' or 'disabled'"),
    scenario_case("resource-kind", [("istio_resources", [{"apiVersion": "v1", "kind": "Pod",
                                                          "metadata": {"name": "p",
                                                                       "namespace": "app"}}])],
                  "istio_resources[0]", "use one of"),
    scenario_case(
        "namespace-trailing-newline", [("namespaces[0].name", "app\n")], "namespaces[0].name",
        "DNS-1123",
    ),
    scenario_case(
        "rps-inf", [(f"{WORKLOAD}.rps", INF)], f"{WORKLOAD}.rps", "finite",
    ),
    scenario_case(
        "label-value-quotes", [("namespaces[0].labels", {"istio.io/rev": "1-30-3",
                                                         "team": 'a"b'})],
        "namespaces[0].labels.team", "label value",
    ),
]  # fmt: skip
