"""FleetSpec: layout, overrides, failure budget, and refusals that name the field."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from pydantic import ValidationError

from istio_upgrade.cli.main import cli
from istio_upgrade.cli.specfile import load_model
from istio_upgrade.client import check_fleet, kubeconfig_contexts, parse_calendar
from istio_upgrade.models.fleet import (
    EXAMPLE_PATH,
    SCHEMA_PATH,
    FailureBudget,
    FleetSpec,
    fleet_workflow_id,
    render_schema,
)

TEMPLATE = {"target": {"version": "1.31.0"}, "gate": {"prometheus_url": "http://prom:9090"}}


def doc(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "name": "prod",
        "clusters": [
            {"name": "a", "context": "ctx-a", "labels": {"env": "canary"}},
            {"name": "b", "context": "ctx-b", "labels": {"env": "prod", "region": "eu"}},
            {"name": "c", "context": "ctx-c", "labels": {"env": "prod", "region": "us"}},
        ],
        "stages": [
            {"name": "canary", "clusters": ["a"]},
            {"name": "rest", "selector": "env=prod", "max_parallel": 2},
        ],
        "template": TEMPLATE,
    }
    base.update(changes)
    return base


def errors(data: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(ValidationError) as info:
        FleetSpec.model_validate(data)
    return {str(e["loc"][0]) if e["loc"] else "": e["msg"] for e in info.value.errors()}


def test_layout_resolves_lists_and_selectors_in_order() -> None:
    spec = FleetSpec.model_validate(doc())
    layout = spec.layout()
    assert [s.name for s in layout] == ["canary", "rest"]
    assert layout[0].clusters == ["a"]
    assert layout[1].groups[0].clusters == ["b", "c"] and layout[1].groups[0].max_parallel == 2
    assert fleet_workflow_id(spec) == "istio-fleet.prod.1-31-0"


def test_a_selector_stage_takes_only_what_earlier_stages_left() -> None:
    spec = FleetSpec.model_validate(
        doc(
            stages=[
                {"name": "eu", "selector": "region=eu"},
                {"name": "rest", "selector": "env in (prod,canary)"},
            ]
        )
    )
    assert [s.clusters for s in spec.layout()] == [["b"], ["a", "c"]]


def test_groups_of_a_stage_are_kept_apart() -> None:
    spec = FleetSpec.model_validate(
        doc(
            stages=[
                {
                    "name": "all",
                    "groups": [
                        {"name": "eu", "clusters": ["a", "b"], "max_parallel": 2},
                        {"name": "us", "selector": "region=us"},
                    ],
                }
            ]
        )
    )
    groups = spec.layout()[0].groups
    assert [(g.name, g.clusters, g.max_parallel) for g in groups] == [
        ("eu", ["a", "b"], 2),
        ("us", ["c"], 1),
    ]


def test_cluster_spec_merges_template_overrides_and_identity() -> None:
    data = doc()
    data["clusters"][1]["overrides"] = {"migration": {"max_batch_size": 3}}
    data["clusters"][1]["task_queue"] = "istio-upgrade.cluster.b"
    spec = FleetSpec.model_validate(data)
    one = spec.cluster_spec("b")
    assert one.cluster.name == "b" and one.cluster.context == "ctx-b"
    assert one.cluster.task_queue == "istio-upgrade.cluster.b"
    assert one.migration.max_batch_size == 3
    assert spec.cluster_spec("c").migration.max_batch_size == 10


@pytest.mark.parametrize(
    ("count", "ratio", "total", "allowed"),
    [(0, 0.0, 6, 0), (1, 0.0, 6, 1), (0, 0.2, 10, 2), (1, 0.1, 100, 10), (3, 0.1, 10, 3)],
)
def test_failure_budget_is_max_of_count_and_ratio(
    count: int, ratio: float, total: int, allowed: int
) -> None:
    assert FailureBudget(count=count, ratio=ratio).allowed(total) == allowed


def test_duplicate_cluster_is_refused_at_its_entry() -> None:
    data = doc()
    data["clusters"].append({"name": "b"})
    found = errors(data)
    assert "clusters[3].name" in found
    assert "listed twice" in found["clusters[3].name"]


def test_empty_stage_is_refused_naming_the_stage() -> None:
    found = errors(doc(stages=[{"name": "canary", "clusters": ["a", "b", "c"]},
                               {"name": "ghost", "selector": "env=staging"}]))  # fmt: skip
    assert "stages[1]" in found and "selects no cluster" in found["stages[1]"]


def test_unknown_cluster_in_a_stage_is_refused() -> None:
    found = errors(doc(stages=[{"name": "canary", "clusters": ["a", "b", "c", "zz"]}]))
    assert "names cluster 'zz'" in found["stages[0].clusters[3]"]


def test_cluster_in_no_stage_is_refused() -> None:
    found = errors(doc(stages=[{"name": "canary", "clusters": ["a"]}]))
    assert "in no stage" in found["stages"]


def test_bad_template_field_is_located_in_the_template() -> None:
    found = errors(doc(template={**TEMPLATE, "migration": {"growth_factor": 0.5}}))
    assert "template.migration.growth_factor" in found


def test_bad_override_is_located_in_the_cluster() -> None:
    data = doc()
    data["clusters"][2]["overrides"] = {"gate": {"soak_seconds": -1}}
    found = errors(data)
    assert "clusters[2].overrides.gate.soak_seconds" in found


def test_window_that_never_opens_is_refused_naming_windows() -> None:
    never = {
        "timezone": "UTC",
        "weekly": [{"days": ["sat"], "start": "02:00", "duration_minutes": 60}],
        "exclusions": [{"start": "2026-01-01", "end": "2028-01-01", "reason": "freeze"}],
    }
    found = errors(doc(windows=never))
    assert any(key.startswith("windows") for key in found), found


def test_windows_reach_every_cluster() -> None:
    windows = {"timezone": "Europe/Berlin", "weekly": [
        {"days": ["tue"], "start": "09:00", "duration_minutes": 120}]}  # fmt: skip
    spec = FleetSpec.model_validate(doc(windows=windows))
    one = spec.cluster_spec("a")
    assert one.windows is not None and one.windows.timezone == "Europe/Berlin"
    assert spec.window_problems(datetime(2026, 12, 1, tzinfo=UTC)) == []


def write_kubeconfig(path: Path, contexts: list[str]) -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "contexts": [{"name": n, "context": {"cluster": n, "user": n}} for n in contexts],
                "clusters": [{"name": n, "cluster": {"server": "https://x"}} for n in contexts],
                "users": [{"name": n, "user": {}} for n in contexts],
                "current-context": contexts[0],
            }
        )
    )
    return path


def test_unknown_context_is_refused_before_anything_starts(tmp_path: Path) -> None:
    kubeconfig = write_kubeconfig(tmp_path / "config", ["ctx-a", "ctx-c"])
    assert kubeconfig_contexts(str(kubeconfig)) == {"ctx-a", "ctx-c"}
    spec = FleetSpec.model_validate(doc())
    with pytest.raises(ValidationError) as info:
        check_fleet(spec, kubeconfig=str(kubeconfig))
    [error] = info.value.errors()
    assert error["loc"] == ("clusters[1].context",)
    assert "'ctx-b'" in error["msg"] and "not in the kubeconfig" in error["msg"]
    check_fleet(
        spec.model_copy(update={"clusters": [spec.clusters[0]]}), kubeconfig=str(kubeconfig)
    )


def test_cli_refuses_unknown_context_with_the_field_and_exit_2(tmp_path: Path) -> None:
    kubeconfig = write_kubeconfig(tmp_path / "config", ["ctx-a"])
    fleet_file = tmp_path / "fleet.yaml"
    fleet_file.write_text(yaml.safe_dump(doc()))
    # No Temporal at this address: the refusal comes before any connection.
    result = CliRunner().invoke(
        cli,
        ["--address", "127.0.0.1:1", "fleet", "start", "-f", str(fleet_file),
         "--kubeconfig", str(kubeconfig)],
    )  # fmt: skip
    assert result.exit_code == 2, result.output
    assert "clusters[1].context" in result.stderr and "clusters[2].context" in result.stderr


def test_cli_refuses_duplicate_cluster_with_the_field(tmp_path: Path) -> None:
    data = doc()
    data["clusters"].append({"name": "a"})
    fleet_file = tmp_path / "fleet.yaml"
    fleet_file.write_text(yaml.safe_dump(data))
    result = CliRunner().invoke(
        cli, ["--address", "127.0.0.1:1", "fleet", "start", "-f", str(fleet_file)]
    )
    assert result.exit_code == 2
    assert "clusters[3].name" in result.stderr


@pytest.mark.parametrize(
    ("text", "days", "hour", "minute"),
    [("sat 02:00", [(6, 6)], 2, 0), ("mon-fri 22:30", [(1, 5)], 22, 30),
     ("daily 03:05", [(0, 6)], 3, 5), ("sat,sun 01:00", [(6, 6), (0, 0)], 1, 0)],
)  # fmt: skip
def test_calendar_text(text: str, days: list[tuple[int, int]], hour: int, minute: int) -> None:
    calendar = parse_calendar(text)
    assert [(r.start, r.end) for r in calendar.day_of_week] == days
    assert calendar.hour[0].start == hour and calendar.minute[0].start == minute


@pytest.mark.parametrize("text", ["sat", "funday 02:00", "sat 25:00", "fri-mon 01:00", "x y z"])
def test_bad_calendar_says_how_to_write_it(text: str) -> None:
    with pytest.raises(ValueError, match="write it like"):
        parse_calendar(text)


def test_published_schema_is_current_and_the_example_is_valid() -> None:
    assert SCHEMA_PATH.read_text() == render_schema(), "run python -m istio_upgrade.models.fleet"
    spec = load_model(EXAMPLE_PATH, FleetSpec)
    assert [s.name for s in spec.layout()] == ["canary", "regions", "rest"]


def test_payloads_stay_bounded_at_the_largest_fleet() -> None:
    from istio_upgrade.models.fleet import MAX_CLUSTERS, ClusterProgress, FleetProgress
    from istio_upgrade.workflows.fleet import MAX_TABLE_ROWS, fleet_markdown

    clusters = [
        {
            "name": f"prod-{i:04d}-eu-west",
            "context": f"arn:aws:eks:eu-west-1:123456789012:cluster/prod-{i:04d}",
            "prometheus_url": f"http://prometheus.prod-{i:04d}.example.internal:9090",
            "labels": {"region": "eu-west-1", "env": "prod", "tier": str(i % 5)},
        }
        for i in range(MAX_CLUSTERS)
    ]
    spec = FleetSpec.model_validate(
        doc(clusters=clusters, stages=[{"name": "all", "selector": "env=prod"}])
    )
    assert len(spec.model_dump_json()) < 200_000
    progress = FleetProgress(
        fleet="prod",
        target_revision="1-31-0",
        clusters=[
            ClusterProgress(
                cluster=c.name, stage="all", group="all", state="ROLLED_BACK",
                upgrade_id=f"istio-upgrade.{c.name}.1-31-0",
            )
            for c in spec.clusters
        ],
    )  # fmt: skip
    for line in progress.clusters:
        line.set_note("GateFailed: " + "x" * 1_000)
    assert len(progress.model_dump_json()) < 160_000
    markdown = fleet_markdown(progress, "default")
    assert markdown.count("\n| prod-") == MAX_TABLE_ROWS and "400 more" in markdown


def test_a_remote_staged_beside_its_primary_is_refused_naming_it() -> None:
    meshes = [{"name": "shop", "primaries": ["b"], "remotes": ["c"]}]
    found = errors(doc(meshes=meshes))
    assert "run ahead of the control plane" in found["meshes[0].remotes[0]"], found
    staged = doc(
        stages=[
            {"name": "canary", "clusters": ["a"]},
            {"name": "primaries", "clusters": ["b"]},
            {"name": "remotes", "clusters": ["c"]},
        ],
        meshes=meshes,
    )
    spec = FleetSpec.model_validate(staged)
    assert spec.primaries_of("c") == ["b"] and spec.primaries_of("b") == []


def test_a_mesh_naming_an_unknown_cluster_or_a_cluster_twice_is_refused() -> None:
    found = errors(doc(meshes=[{"name": "m", "primaries": ["zz"]}]))
    assert "not in clusters" in found["meshes[0].primaries[0]"], found
    twice = [{"name": "m", "primaries": ["a"]}, {"name": "n", "primaries": ["a"]}]
    assert "belongs to one mesh" in errors(doc(meshes=twice))["meshes[1].primaries[0]"]


def test_a_dry_run_template_or_override_is_refused() -> None:
    found = errors(doc(template={**TEMPLATE, "dry_run": True}))
    assert any("fleet plan" in m for m in found.values()), found
    clusters = doc()["clusters"]
    clusters[1] = {**clusters[1], "overrides": {"dry_run": True}}
    assert "fleet plan" in errors(doc(clusters=clusters))["clusters[1].overrides.dry_run"]
