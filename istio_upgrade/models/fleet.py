"""``FleetSpec``: the single input of the ``FleetRollout`` workflow, and what it reports.

A fleet is a list of clusters and the stages that upgrade them in order. Inside a stage the
groups run in parallel, and inside a group at most ``max_parallel`` clusters at once. Every
cluster gets the same ``UpgradeSpec`` (the ``template``, without its ``cluster``) plus its own
``overrides``. When more clusters fail than the failure budget allows —
``max(count, floor(ratio x clusters))`` — no further cluster starts.

Like ``UpgradeSpec``, the document rejects unknown keys, and every error names its field and
says what to do. Checks that need the machine of the starter (kubeconfig contexts) are in
:func:`istio_upgrade.client.check_fleet_contexts`.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    ValidationError,
    field_validator,
    model_validator,
)

from istio_upgrade.models.prometheus_auth import PrometheusAuth
from istio_upgrade.models.selector import parse_selector, selector_matches
from istio_upgrade.models.slo import explain, refusal
from istio_upgrade.models.spec import (
    MAX_SECONDS,
    check_dns1123,
    check_prometheus_base_url,
    check_task_queue,
    check_text,
)
from istio_upgrade.models.spec import UpgradeSpec as UpgradeSpec
from istio_upgrade.models.windows import MaintenanceWindows

MAX_CLUSTERS = 500
"""Clusters of one fleet. The spec is the fleet's input, kept in its history, in every
continued run and in a Schedule's action: 500 clusters at about 300 bytes each (name, context,
URL, a few labels) are 150 KB, well below the 512 KB at which Temporal warns. Larger fleets
are split into several fleets."""
MAX_OVERRIDE_BYTES = 4_096
"""JSON size of one cluster's overrides (the same bound across 500 clusters: 2 MB would
exceed Temporal's payload limit)."""
MAX_STAGES = 50
MAX_PARALLEL = 100
"""Clusters of one group upgrading at once: each is a child workflow and its activities."""
MAX_NOTE = 120
"""Characters of one cluster's note in the progress (the error of a failed upgrade)."""

ClusterState = Literal[
    "PENDING",
    "WAITING_WINDOW",
    "RUNNING",
    "FOLLOWING",
    "SUCCEEDED",
    "ROLLED_BACK",
    "FAILED",
    "CANCELED",
    "SKIPPED",
]
"""Where one cluster of the fleet is. ``FOLLOWING``: an upgrade of this cluster to the same
revision was already running (started by hand or by another fleet); the fleet follows it
instead of starting a twin. ``SKIPPED``: never started (budget spent, fleet aborted)."""
FAILED_STATES = frozenset({"ROLLED_BACK", "FAILED", "CANCELED"})
"""States that spend the failure budget."""
ENDED_STATES = frozenset({"SUCCEEDED", *FAILED_STATES, "SKIPPED"})


class _Strict(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        use_attribute_docstrings=True,
        allow_inf_nan=False,
        hide_input_in_errors=True,
    )


class FleetCluster(_Strict):
    """One cluster of the fleet."""

    name: str
    """Short cluster name (DNS-1123 label); the child upgrade's id is
    ``istio-upgrade.<name>.<revision>``."""
    context: str | None = None
    """kubeconfig context of the cluster; None = the worker's current context."""
    prometheus_url: str | None = None
    """Prometheus scraping this cluster's mesh (the gate's); default the template's."""
    prometheus_auth: PrometheusAuth | None = None
    """How the worker authenticates to it (references, never values); default the
    template's ``gate.prometheus_auth``. Becomes ``cluster.prometheus_auth``."""
    labels: dict[str, str] = Field(default_factory=dict)
    """Labels such as ``region: eu``, ``env: prod``, matched by the stages' selectors."""
    task_queue: str | None = None
    """Task queue of the workers next to this cluster (``istio-upgrade worker --cluster
    NAME``), for its activities; None = the fleet's own. Becomes ``cluster.task_queue``."""
    overrides: dict[str, Any] = Field(default_factory=dict)
    """Fields of the template this cluster changes (merged key by key, e.g.
    ``{"migration": {"max_batch_size": 3}}``); ``cluster`` itself cannot be overridden."""

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return check_dns1123(value, "name")

    @field_validator("context")
    @classmethod
    def _context(cls, value: str | None) -> str | None:
        return None if value is None else check_text(value, "context")

    @field_validator("prometheus_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return None if value is None else check_prometheus_base_url(value, "prometheus_url")

    @field_validator("labels")
    @classmethod
    def _labels(cls, value: dict[str, str]) -> dict[str, str]:
        for key, item in value.items():
            # The selector parser holds Kubernetes' label grammar: reuse it on key=value.
            parse_selector(f"{key}={item}")
        return value

    @field_validator("task_queue")
    @classmethod
    def _queue(cls, value: str | None) -> str | None:
        return None if value is None else check_task_queue(value, "task_queue")

    @field_validator("overrides")
    @classmethod
    def _overrides(cls, value: dict[str, Any]) -> dict[str, Any]:
        if "cluster" in value:
            raise ValueError(
                "overrides may not set cluster: set name, context, prometheus_url, "
                "prometheus_auth and task_queue on the fleet's cluster entry instead"
            )
        import json

        size = len(json.dumps(value))
        if size > MAX_OVERRIDE_BYTES:
            raise ValueError(
                f"overrides are {size:,} bytes of JSON; at most {MAX_OVERRIDE_BYTES:,}: put what "
                "every cluster shares in the template"
            )
        return value


class FleetGroup(_Strict):
    """Clusters of a stage that upgrade side by side with the other groups of the stage."""

    name: str = ""
    """Shown in the progress; default ``group-<n>``."""
    clusters: list[str] = Field(default_factory=list)
    """Cluster names, in order."""
    selector: str = ""
    """Label selector over the clusters' labels (``region=eu,env in (prod)``), added after
    ``clusters`` in the order the fleet lists them."""
    max_parallel: int = Field(1, ge=1, le=MAX_PARALLEL)
    """Clusters of this group upgrading at once."""

    @field_validator("selector")
    @classmethod
    def _selector(cls, value: str) -> str:
        if value.strip():
            parse_selector(value)
        return value


class FleetMesh(_Strict):
    """Clusters of one multi-cluster mesh, so that the rollout keeps their skew legal.

    A remote's proxies are served by its primaries' control plane: a remote may move to the
    new revision only after every primary of its mesh did. Validation refuses a remote staged
    before or beside a primary; at run time a remote whose primary did not upgrade is skipped.
    Multi-primary meshes list primaries only: each upgrades its own control plane.
    """

    name: str
    """Mesh name (DNS-1123 label), used in messages."""
    primaries: list[str] = Field(min_length=1)
    """Clusters running the control plane (primary or multi-primary)."""
    remotes: list[str] = Field(default_factory=list)
    """Clusters whose proxies the primaries' control plane serves."""

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return check_dns1123(value, "meshes[].name")


class FleetStage(_Strict):
    """A step of the rollout: its clusters start only after the previous stage ended."""

    name: str
    """Stage name (DNS-1123 label), e.g. ``canary``, ``eu``, ``rest``."""
    clusters: list[str] = Field(default_factory=list)
    """Shorthand for one group: cluster names."""
    selector: str = ""
    """Shorthand for one group: a label selector over the clusters' labels."""
    max_parallel: int = Field(1, ge=1, le=MAX_PARALLEL)
    """With the shorthand: clusters upgrading at once."""
    groups: list[FleetGroup] = Field(default_factory=list)
    """Groups running in parallel (instead of the shorthand)."""
    approval: bool = False
    """Wait for ``approve`` before the stage starts."""
    soak_seconds: float = Field(0.0, ge=0, le=MAX_SECONDS)
    """Bake time after the stage's last cluster ended, before the next stage."""

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return check_dns1123(value, "name")

    @field_validator("selector")
    @classmethod
    def _selector(cls, value: str) -> str:
        if value.strip():
            parse_selector(value)
        return value

    @model_validator(mode="after")
    def _one_form(self) -> FleetStage:
        if self.groups and (self.clusters or self.selector.strip()):
            raise ValueError(
                "groups and clusters/selector are both set: list the clusters inside groups, "
                "or drop groups and use the shorthand"
            )
        return self

    def group_specs(self) -> list[FleetGroup]:
        """The stage's groups, the shorthand read as one group."""
        if self.groups:
            return self.groups
        return [
            FleetGroup(
                name=self.name,
                clusters=self.clusters,
                selector=self.selector,
                max_parallel=self.max_parallel,
            )
        ]


class FailureBudget(_Strict):
    """How many failed clusters the fleet tolerates: ``max(count, floor(ratio x clusters))``.

    A failed cluster is one whose upgrade rolled back, failed or was cancelled. Once more
    clusters failed than the budget allows, no new cluster starts; the running ones finish.
    """

    count: int = Field(0, ge=0, le=MAX_CLUSTERS)
    """Failed clusters tolerated whatever the fleet's size (0: the first failure stops it)."""
    ratio: float = Field(0.0, ge=0.0, le=1.0)
    """Fraction of the fleet's clusters tolerated to fail."""

    def allowed(self, total: int) -> int:
        """Failures tolerated in a fleet of ``total`` clusters."""
        return max(self.count, math.floor(self.ratio * total + 1e-9))


class GroupLayout(BaseModel):
    """A group as the rollout runs it: cluster names resolved from lists and selectors."""

    name: str
    clusters: list[str]
    max_parallel: int


class StageLayout(BaseModel):
    """A stage as the rollout runs it."""

    name: str
    groups: list[GroupLayout]
    approval: bool = False
    soak_seconds: float = 0.0

    @property
    def clusters(self) -> list[str]:
        return [c for g in self.groups for c in g.clusters]


def window_opens_at(windows: MaintenanceWindows | None, at: datetime) -> datetime | None:
    """When a cluster may start at ``at``: ``at`` itself inside a window, else the next opening,
    None when the windows never open again. No windows: always open."""
    if windows is None:
        return at
    if windows.is_open(at):
        return at
    opens: datetime | None = windows.next_open(at)
    return opens


class FleetSpec(_Strict):
    """A rollout of one Istio version over many clusters, stage by stage."""

    name: str
    """Fleet name (DNS-1123 label): the rollout's id is ``istio-fleet.<name>.<revision>``."""
    clusters: list[FleetCluster] = Field(min_length=1, max_length=MAX_CLUSTERS)
    """Every cluster of the fleet: its name, context, Prometheus, labels and overrides."""
    stages: list[FleetStage] = Field(min_length=1, max_length=MAX_STAGES)
    """The stages in order; each picks clusters by name or label selector."""
    template: dict[str, Any]
    """The ``UpgradeSpec`` every cluster gets, without ``cluster`` (``target``, ``installer``,
    ``migration``, ``gate`` …; see ``istio-upgrade schema``)."""
    failure_budget: FailureBudget = Field(default_factory=FailureBudget)
    """How many cluster upgrades may fail or roll back before the fleet stops."""
    windows: MaintenanceWindows | None = None
    """Maintenance windows (weekly windows in a timezone, with exclusions): a cluster's upgrade
    starts only inside one. Handed to every cluster's upgrade too (unless its overrides set
    their own), so each batch starts inside a window and a rollback never waits."""
    max_stages_per_run: int = Field(0, ge=0, le=MAX_STAGES)
    """Continue as new after this many stages (0: only when Temporal suggests it). Each run's
    history holds its stages' children only; the next run takes over the cluster lines."""
    meshes: list[FleetMesh] = Field(default_factory=list)
    """Multi-cluster meshes among the clusters: remotes are staged after their primaries and
    skipped when a primary did not upgrade."""

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return check_dns1123(value, "name")

    @field_validator("template")
    @classmethod
    def _template(cls, value: dict[str, Any]) -> dict[str, Any]:
        if "cluster" in value:
            raise ValueError(
                "template may not set cluster: every cluster of the fleet is listed in clusters"
            )
        if value.get("dry_run"):
            # A dry child would end SUCCEEDED under the real upgrade's id, and block it.
            raise ValueError(
                "template may not set dry_run: a fleet runs real upgrades; "
                "`istio-upgrade fleet plan` dry-runs every cluster"
            )
        return value

    @model_validator(mode="wrap")
    @classmethod
    def _explained(cls, data: Any, handler: ModelWrapValidatorHandler[FleetSpec]) -> FleetSpec:
        try:
            spec = handler(data)
        except ValidationError as error:
            raise explain(error, cls, hint="see `istio-upgrade fleet schema`") from None
        problems = list(spec._problems())
        if problems:
            raise refusal(cls, problems)
        return spec

    # -- cross-field checks -----------------------------------------------------------------

    def _problems(self) -> Iterator[tuple[str, str, Any]]:
        seen: dict[str, int] = {}
        for index, cluster in enumerate(self.clusters):
            if cluster.name in seen:
                yield (
                    f"clusters[{index}].name",
                    f"cluster {cluster.name!r} is listed twice (also "
                    f"clusters[{seen[cluster.name]}]); list each cluster once",
                    cluster.name,
                )
            else:
                seen[cluster.name] = index
        placed: dict[str, str] = {}
        for s_index, stage in enumerate(self.stages):
            names = [s.name for s in self.stages]
            if names.index(stage.name) != s_index:
                yield (
                    f"stages[{s_index}].name",
                    f"stage {stage.name!r} is named twice; give each stage its own name",
                    stage.name,
                )
            groups = stage.group_specs()
            stage_total = 0
            for g_index, group in enumerate(groups):
                where = (
                    f"stages[{s_index}].groups[{g_index}]" if stage.groups else f"stages[{s_index}]"
                )
                for c_index, name in enumerate(group.clusters):
                    if name not in seen:
                        yield (
                            f"{where}.clusters[{c_index}]",
                            f"names cluster {name!r}, which is not in clusters; add it there or "
                            "fix the name",
                            name,
                        )
                members = self._members(group, set(placed))
                for name in members:
                    if name in placed:
                        yield (
                            f"{where}.clusters",
                            f"cluster {name!r} is in stage {placed[name]!r} and again in stage "
                            f"{stage.name!r}; a cluster is upgraded once, in one stage",
                            name,
                        )
                    placed.setdefault(name, stage.name)
                stage_total += len(members)
            if stage_total == 0:
                yield (
                    f"stages[{s_index}]",
                    f"stage {stage.name!r} selects no cluster; list clusters, fix its selector "
                    "or remove the stage",
                    None,
                )
        unplaced = [c.name for c in self.clusters if c.name not in placed]
        if unplaced:
            shown = ", ".join(unplaced[:10]) + (" …" if len(unplaced) > 10 else "")
            yield (
                "stages",
                f"clusters {shown} are in no stage; add them to a stage or remove them from "
                "clusters",
                None,
            )
        for index, cluster in enumerate(self.clusters):
            if cluster.overrides.get("dry_run"):
                yield (
                    f"clusters[{index}].overrides.dry_run",
                    "a fleet runs real upgrades; `istio-upgrade fleet plan` dry-runs every cluster",
                    True,
                )
        yield from self._mesh_problems(seen)
        yield from self._template_problems()

    def _mesh_problems(self, known: dict[str, int]) -> Iterator[tuple[str, str, Any]]:
        stage_of = {
            name: index
            for index, stage in enumerate(self.layout())
            for group in stage.groups
            for name in group.clusters
        }
        meshed: dict[str, str] = {}
        for m_index, mesh in enumerate(self.meshes):
            for role in ("primaries", "remotes"):
                for c_index, name in enumerate(getattr(mesh, role)):
                    where = f"meshes[{m_index}].{role}[{c_index}]"
                    if name not in known:
                        yield (where, f"names cluster {name!r}, which is not in clusters", name)
                    elif name in meshed:
                        yield (
                            where,
                            f"cluster {name!r} is also in mesh {meshed[name]!r}; a cluster "
                            "belongs to one mesh",
                            name,
                        )
                    meshed.setdefault(name, mesh.name)
            last_primary = max((stage_of.get(p, -1) for p in mesh.primaries), default=-1)
            for c_index, name in enumerate(mesh.remotes):
                if name in stage_of and stage_of[name] <= last_primary:
                    stage = self.stages[stage_of[name]].name
                    yield (
                        f"meshes[{m_index}].remotes[{c_index}]",
                        f"remote {name!r} is in stage {stage!r}, not after its primaries' stage "
                        f"{self.stages[last_primary].name!r}: its proxies would run ahead of the "
                        "control plane serving them; move it to a later stage",
                        name,
                    )

    def primaries_of(self, cluster: str) -> list[str]:
        """The primaries whose control plane serves ``cluster``, if it is a mesh's remote."""
        return [p for m in self.meshes if cluster in m.remotes for p in m.primaries]

    def window_problems(self, now: datetime) -> list[tuple[str, str, Any]]:
        """``windows`` that never open after ``now``, as ``(path, message, input)``.

        Not part of validation: the workflow validates its input too, and must not read the
        clock there. The starter checks it (``client.check_fleet``) before anything starts.
        """
        if self.windows is None:
            return []
        try:
            opens = window_opens_at(self.windows, now)
        except Exception as error:  # a model that cannot answer is a broken spec
            return [("windows", f"cannot be evaluated: {error}", None)]
        if opens is None or opens - now > timedelta(days=400):
            return [
                (
                    "windows",
                    "never opens: no window is open now or in the next 400 days (every weekly "
                    "window is excluded or empty); add a weekly window or shorten the exclusions",
                    None,
                )
            ]
        return []

    def _template_problems(self) -> Iterator[tuple[str, str, Any]]:
        for index, cluster in enumerate(self.clusters):
            try:
                self.cluster_spec(cluster.name)
            except ValidationError as error:
                for item in error.errors(include_url=False):
                    path = ".".join(str(p) for p in item["loc"])
                    owner = path.split(".")[0].split("[")[0]
                    at = (
                        f"clusters[{index}].overrides.{path}"
                        if owner in cluster.overrides
                        else f"template.{path}"
                    )
                    yield (at, f"(cluster {cluster.name}) {item['msg']}", None)
                if not cluster.overrides:
                    # The template is wrong for everyone: say it once.
                    return

    # -- derived ---------------------------------------------------------------------------

    def _members(self, group: FleetGroup, taken: set[str]) -> list[str]:
        """The group's clusters: its list, then what its selector matches among the clusters
        no earlier group took (so a last stage ``selector: env=prod`` means "the rest")."""
        known = {c.name for c in self.clusters}
        members = [n for n in group.clusters if n in known]
        if group.selector.strip():
            for cluster in self.clusters:
                if (
                    cluster.name not in members
                    and cluster.name not in taken
                    and selector_matches(group.selector, cluster.labels)
                ):
                    members.append(cluster.name)
        return list(dict.fromkeys(members))

    def layout(self) -> list[StageLayout]:
        """The stages with their groups' clusters resolved, in order."""
        stages = []
        taken: set[str] = set()
        for stage in self.stages:
            groups = []
            for g_index, group in enumerate(stage.group_specs()):
                members = [m for m in self._members(group, taken) if m not in taken]
                taken.update(members)
                groups.append(
                    GroupLayout(
                        name=group.name or f"group-{g_index}",
                        clusters=members,
                        max_parallel=group.max_parallel,
                    )
                )
            stages.append(
                StageLayout(
                    name=stage.name,
                    groups=[g for g in groups if g.clusters],
                    approval=stage.approval,
                    soak_seconds=stage.soak_seconds,
                )
            )
        return stages

    def cluster(self, name: str) -> FleetCluster:
        for cluster in self.clusters:
            if cluster.name == name:
                return cluster
        raise KeyError(name)

    def cluster_spec(self, name: str) -> UpgradeSpec:
        """The ``UpgradeSpec`` of one cluster: template, then its overrides, then its identity."""
        cluster = self.cluster(name)
        doc = _merge(copy.deepcopy(self.template), cluster.overrides)
        ref: dict[str, Any] = {"name": cluster.name}
        if cluster.context is not None:
            ref["context"] = cluster.context
        if cluster.prometheus_url is not None:
            ref["prometheus_url"] = cluster.prometheus_url
        if cluster.prometheus_auth is not None:
            ref["prometheus_auth"] = cluster.prometheus_auth.model_dump(
                mode="json", exclude_none=True
            )
        if cluster.task_queue is not None:
            ref["task_queue"] = cluster.task_queue
        doc["cluster"] = ref
        if self.windows is not None:
            doc.setdefault("windows", self.windows.model_dump(mode="json"))
        return UpgradeSpec.model_validate(doc)

    @property
    def target_revision(self) -> str:
        """The revision every cluster moves to (from the template's ``target``)."""
        return self.cluster_spec(self.clusters[0].name).target_revision

    def budget_allowed(self) -> int:
        return self.failure_budget.allowed(len(self.clusters))


def _merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            base[key] = _merge(base[key], value)
        else:
            base[key] = copy.deepcopy(value)
    return base


def fleet_workflow_id(spec: FleetSpec) -> str:
    """``istio-fleet.<name>.<revision>``: one rollout per fleet and revision. A Schedule's runs
    append ``-<timestamp>`` to the id the Schedule names."""
    return f"istio-fleet.{spec.name}.{spec.target_revision}"


# -- what the rollout reports ---------------------------------------------------------------


class _Model(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True)


class ClusterProgress(_Model):
    """One cluster's line of the fleet's progress (bounded: no per-batch detail, a capped
    note)."""

    cluster: str
    stage: str
    group: str
    state: ClusterState = "PENDING"
    upgrade_id: str = ""
    """The single-cluster upgrade's workflow id (a child, or a followed run)."""
    note: str = ""
    """Why it failed, what it waits for; at most ``MAX_NOTE`` characters."""
    opens_at: datetime | None = None
    """With ``WAITING_WINDOW``: when the next window opens."""
    budget_spent: dict[str, float] = Field(default_factory=dict)
    """SLO name → fraction of the period's error budget the cluster's upgrade spent (from its
    result; empty for a followed run or an upgrade that measured none)."""

    def set_note(self, text: str) -> None:
        self.note = text if len(text) <= MAX_NOTE else text[: MAX_NOTE - 1] + "…"


FleetPhase = Literal[
    "RUNNING",
    "PAUSED",
    "WAITING_APPROVAL",
    "SOAKING",
    "ABORTING",
    "SUCCEEDED",
    "FAILED",
    "ABORTED",
]


class FleetProgress(_Model):
    """The ``progress`` query of a ``FleetRollout``, and its carryover: at most ~300 bytes per
    cluster (a capped note), under 160 KB at ``MAX_CLUSTERS``."""

    fleet: str
    target_revision: str
    phase: FleetPhase = "RUNNING"
    stage: str = ""
    """The stage running (or waited for)."""
    stage_index: int = 0
    clusters: list[ClusterProgress] = Field(default_factory=list)
    failures: int = 0
    budget_allowed: int = 0
    budget_exceeded: bool = False
    waiting: str = ""
    """What the fleet waits for: an approval, a window (with its opening time), a soak."""
    aborted_by: str = ""
    runs: int = 1
    """Runs of the rollout so far (it continues as new between stages of long fleets)."""

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for line in self.clusters:
            out[line.state] = out.get(line.state, 0) + 1
        return out


class FleetResult(_Model):
    """How a fleet rollout ended (returned when every cluster succeeded; a
    stopped rollout fails with an ``ApplicationError`` whose first detail is this result)."""

    outcome: Literal["SUCCEEDED", "FAILED", "ABORTED"]
    summary: str
    fleet_id: str
    target_revision: str
    clusters: list[ClusterProgress]


class FleetAbortRequest(BaseModel):
    """Argument of the fleet's ``abort`` update."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    reason: str = Field(min_length=1)
    requested_by: str = ""


class FleetApproveRequest(BaseModel):
    """Argument of the fleet's ``approve`` update: lets the waiting stage start."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    approver: str = Field(min_length=1)
    comment: str = ""


class FleetCarryover(BaseModel):
    """What a continued run of the rollout takes over: the cluster lines and counters only
    (see ``FleetProgress``), never child results."""

    model_config = ConfigDict(extra="forbid")

    progress: FleetProgress
    next_stage: int
    paused: bool = False
    """The fleet was paused at the hand-over: the next run stays paused until ``resume``."""


class FollowInput(BaseModel):
    """Input of the ``follow_upgrade`` activity: an upgrade run the fleet did not start."""

    upgrade_id: str
    run_id: str | None = None


class FollowResult(BaseModel):
    """How a followed upgrade ended."""

    outcome: Literal["SUCCEEDED", "ROLLED_BACK", "FAILED", "CANCELED"]
    note: str = ""


Outcome = Literal["SUCCEEDED", "ROLLED_BACK", "FAILED", "CANCELED"]


# -- published schema ----------------------------------------------------------------------

_EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples"
SCHEMA_PATH = _EXAMPLES / "fleet-spec.schema.json"
EXAMPLE_PATH = _EXAMPLES / "fleet-example.yaml"


def fleet_spec_schema() -> dict[str, Any]:
    """The JSON schema of ``FleetSpec`` (the ``FleetRollout`` start form's input)."""
    schema = FleetSpec.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "FleetSpec"
    return schema


def render_schema() -> str:
    """The schema file's exact text (``python -m istio_upgrade.models.fleet`` writes it)."""
    import json

    return json.dumps(fleet_spec_schema(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    SCHEMA_PATH.write_text(render_schema())
    print(f"wrote {SCHEMA_PATH}")
