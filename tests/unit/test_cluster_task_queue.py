"""Which task queues `istio-upgrade worker` serves, and which queue a step is routed to."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from istio_upgrade.cli.main import cli
from istio_upgrade.models.activities import DiscoverInput, PlanInput
from istio_upgrade.models.spec import ClusterRef, UpgradeSpec
from istio_upgrade.worker import worker_queues
from istio_upgrade.workflows import steps


def test_worker_serves_the_main_queue_unless_clusters_are_named() -> None:
    assert worker_queues() == [("istio-upgrade", True)]
    assert worker_queues(["east", "west"]) == [
        ("istio-upgrade.cluster.east", False),
        ("istio-upgrade.cluster.west", False),
    ]
    assert worker_queues(["east"], main=True, main_queue="q") == [
        ("q", True),
        ("istio-upgrade.cluster.east", False),
    ]
    assert worker_queues(activity_queues=["custom"]) == [("custom", False)]


@pytest.mark.parametrize(
    ("clusters", "queues", "needle"),
    [
        (["East"], [], "DNS-1123"),
        (["east", "east"], [], "named twice"),
        (["east"], ["istio-upgrade.cluster.east"], "named twice"),
        ([], ["has space"], "without spaces"),
    ],
)
def test_bad_worker_queues_are_refused(clusters: list[str], queues: list[str], needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        worker_queues(clusters, activity_queues=queues)


def test_cli_refuses_bad_worker_arguments_with_usage_exit_code() -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["worker", "--cluster", "east,East"])
    assert result.exit_code == 2, result.output
    assert "--cluster 'East'" in result.output + (result.stderr or "")
    result = runner.invoke(cli, ["worker", "--no-main"])
    assert result.exit_code == 2
    assert "nothing to serve" in result.output + (result.stderr or "")


def test_a_step_goes_to_the_queue_of_the_cluster_its_input_names() -> None:
    routed = ClusterRef(name="east", task_queue="istio-upgrade.cluster.east")
    assert steps._cluster_of(routed) is routed
    assert steps._cluster_of(DiscoverInput(cluster=routed)) is routed
    spec = UpgradeSpec.model_validate(
        {"cluster": routed.model_dump(), "target": {"version": "1.31.0"}}
    )
    assert steps._cluster_of(PlanInput(spec=spec, upgrade_id="u")) == routed
    assert steps._cluster_of("http://prometheus:9090") is None
