"""The plan of an upgrade (batches) and the precheck findings about the cluster."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    field_serializer,
    model_validator,
)


class _Model(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True)


class NamespaceLabels(_Model):
    """The injection labels of a namespace; None means the label is absent."""

    namespace: str
    istio_injection: str | None = None
    """Value of ``istio-injection``."""
    istio_rev: str | None = None
    """Value of ``istio.io/rev``."""


def _group_labels(labels: list[NamespaceLabels]) -> Any:
    """A list of labels in JSON: grouped by value, with each one's position (exact round trip)."""
    groups: dict[tuple[str | None, str | None], dict[str, Any]] = {}
    for i, lab in enumerate(labels):
        key = (lab.istio_injection, lab.istio_rev)
        group = groups.setdefault(
            key, {"istio_injection": key[0], "istio_rev": key[1], "namespaces": [], "at": []}
        )
        group["namespaces"].append(lab.namespace)
        group["at"].append(i)
    return {"grouped": list(groups.values())}


def _ungroup_labels(value: Any) -> Any:
    if not isinstance(value, dict):
        return value  # the plain list (recorded before grouping, or Python)
    at: dict[int, dict[str, Any]] = {}
    for g in value.get("grouped", []):
        for i, ns in zip(g["at"], g["namespaces"], strict=True):
            at[i] = {
                "namespace": ns,
                "istio_injection": g["istio_injection"],
                "istio_rev": g["istio_rev"],
            }
    return [at[i] for i in sorted(at)]


GroupedLabels = Annotated[
    list[NamespaceLabels],
    BeforeValidator(_ungroup_labels),
    PlainSerializer(_group_labels, when_used="json"),
]
"""Labels of many namespaces: in JSON, a namespace costs its name and a position (about 8
bytes more), not a whole object (about 80): activity inputs naming every migrated namespace
stay far from Temporal's payload limits."""


class WorkloadRevision(_Model):
    """A workload whose pods opt in by their own labels, and the pod template's revision."""

    namespace: str
    kind: str
    name: str
    revision: str | None = None
    """Value of the pod template's ``istio.io/rev`` label (of a ``Gateway``: its own label);
    None means the label is absent."""
    deployment: str | None = None
    """For a Gateway API ``Gateway``: the Deployment istiod renders for it."""

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.kind}/{self.name}"

    @property
    def runs_as(self) -> str:
        """``Kind/name`` of the workload whose pods it moves."""
        return f"Deployment/{self.deployment}" if self.deployment else f"{self.kind}/{self.name}"


class Batch(_Model):
    """Namespaces that migrate together and are gated together."""

    index: int
    namespaces: list[str]
    canary: bool = False
    gateway: bool = False
    """The final batch of namespaces running injected gateways."""
    original_labels: list[NamespaceLabels] = Field(default_factory=list)
    """Injection labels before migration, restored exactly on rollback."""
    workloads: list[WorkloadRevision] = Field(default_factory=list)
    """Workloads opted in per pod (``sidecar.istio.io/inject: "true"`` or ``istio.io/rev`` on
    the pod template) in namespaces without an injection label, with their original template
    revision: they migrate by their pod template's ``istio.io/rev``, their namespace keeps its
    labels. Helm gateways are the common case."""

    @field_serializer("original_labels", when_used="json")
    def _labels_by_value(self, labels: list[NamespaceLabels]) -> Any:
        """In JSON (the history, continue-as-new, query results), the labels are grouped by
        value and name their namespaces by position in ``namespaces``: about five bytes per
        namespace instead of eighty, so a plan costs little more than its namespace names."""
        position = {ns: i for i, ns in enumerate(self.namespaces)}
        at = [position.get(lab.namespace, -1) for lab in labels]
        if any(i < 0 for i in at) or at != sorted(set(at)):
            return [lab.model_dump(mode="json") for lab in labels]  # the plain form
        groups: dict[tuple[str | None, str | None], list[int]] = {}
        for lab, i in zip(labels, at, strict=True):
            groups.setdefault((lab.istio_injection, lab.istio_rev), []).append(i)
        return {
            "grouped": [
                {"istio_injection": injection, "istio_rev": rev, "at": positions}
                for (injection, rev), positions in groups.items()
            ]
        }

    @model_validator(mode="before")
    @classmethod
    def _labels_from_groups(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        labels = data.get("original_labels")
        if not isinstance(labels, dict):
            return data  # the plain form (histories recorded before grouping, or Python)
        namespaces = data.get("namespaces") or []
        by_position = {
            i: {
                "namespace": namespaces[i],
                "istio_injection": g.get("istio_injection"),
                "istio_rev": g.get("istio_rev"),
            }
            for g in labels.get("grouped", [])
            for i in g["at"]
        }
        return {**data, "original_labels": [by_position[i] for i in sorted(by_position)]}

    @property
    def labelled_namespaces(self) -> list[str]:
        """Namespaces of the batch that migrate by their namespace labels."""
        return [labels.namespace for labels in self.original_labels]

    @property
    def per_workload_namespaces(self) -> list[str]:
        """Namespaces of the batch that migrate per workload only (their labels stay)."""
        labelled = set(self.labelled_namespaces)
        return [ns for ns in self.namespaces if ns not in labelled]


class ExcludedNamespace(_Model):
    """A selected namespace that will not migrate, and why."""

    namespace: str
    reason: str


class Plan(_Model):
    """The batches of one upgrade, computed from the inventory and the spec."""

    cluster: str
    source_revision: str
    source_version: str | None = None
    target_revision: str
    target_version: str
    batches: list[Batch] = Field(default_factory=list)
    excluded: list[ExcludedNamespace] = Field(default_factory=list)
    tags_to_move: list[str] = Field(default_factory=list)
    """Tag names re-pointed to the target revision at promote time."""

    @property
    def namespaces(self) -> list[str]:
        return [ns for b in self.batches for ns in b.namespaces]


Severity = Literal["error", "warning", "info"]


class Finding(_Model):
    """One precheck observation."""

    severity: Severity
    code: str
    """Stable identifier, e.g. ``SKEW``, ``IST0123``, ``NON_RESTARTABLE``."""
    message: str
    namespace: str | None = None


class PrecheckReport(_Model):
    """Findings about the cluster before anything is written."""

    findings: list[Finding] = Field(default_factory=list)
    target_installed: bool = False
    """The target revision already exists."""
    resumed: bool = False
    """…installed by an earlier attempt of this same upgrade, so installing again is a no-op."""

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "warning"]
