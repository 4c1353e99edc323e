"""Whether a worker polls the task queue: without one (or with versioned workers and no
current version), a started upgrade waits silently; and the task queues
``istio-upgrade worker`` serves (``--cluster``, ``--activity-queue``, ``--main``).
"""

from __future__ import annotations

import click
from temporalio.api.enums.v1 import TaskQueueType, WorkerVersioningMode
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest, DescribeTaskQueueResponse
from temporalio.client import Client
from temporalio.service import RPCError

from istio_upgrade.cli.errors import CommandError
from istio_upgrade.cli.exit_codes import ExitCode


def worker_arguments(
    clusters: tuple[str, ...], activity_queues: tuple[str, ...], main: bool | None
) -> tuple[str, ...]:
    """The cluster names of ``--cluster`` (repeated or comma-separated), checked.

    Raises:
        CommandError: A name that is not a DNS-1123 label, a queue named twice, or
            ``--no-main`` with nothing else to serve (exit code 2).
    """
    from istio_upgrade.worker import worker_queues

    names = tuple(n.strip() for value in clusters for n in value.split(",") if n.strip())
    if main is False and not names and not activity_queues:
        raise CommandError(
            "--no-main leaves the worker nothing to serve; name clusters with --cluster",
            ExitCode.USAGE,
        )
    try:
        worker_queues(names, main=main, activity_queues=activity_queues)
    except ValueError as error:
        raise CommandError(str(error), ExitCode.USAGE) from None
    return names


async def _describe(client: Client, task_queue: str) -> DescribeTaskQueueResponse | None:
    request = DescribeTaskQueueRequest(
        namespace=client.namespace,
        task_queue=TaskQueue(name=task_queue),
        task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
    )
    try:
        return await client.workflow_service.describe_task_queue(request)
    except RPCError:
        # Permissions or an older server: the check is advice, never a reason to fail.
        return None


async def has_workers(client: Client, task_queue: str) -> bool | None:
    """Whether any worker polled ``task_queue`` for workflow tasks recently; None if unknown."""
    response = await _describe(client, task_queue)
    return None if response is None else len(response.pollers) > 0


def no_current_version(response: DescribeTaskQueueResponse) -> bool:
    """Every recent poller is versioned and the queue has no current version: new workflows
    go to unversioned workers, of which there are none (``WORKER_VERSIONING=on`` before
    ``istio-upgrade workers set-current``)."""
    pollers = response.pollers
    versioned = WorkerVersioningMode.WORKER_VERSIONING_MODE_VERSIONED
    return (
        bool(pollers)
        and all(p.deployment_options.worker_versioning_mode == versioned for p in pollers)
        and not response.versioning_info.current_deployment_version.build_id
    )


async def warn_without_workers(client: Client, task_queue: str, what: str) -> None:
    """Tell the operator on stderr when nothing will pick ``what`` up."""
    response = await _describe(client, task_queue)
    if response is None:
        return
    if not response.pollers:
        click.echo(
            f"warning: no worker polls task queue {task_queue!r} in namespace "
            f"{client.namespace!r}; {what} waits until one does — run `istio-upgrade worker` "
            "with the same TEMPORAL_* settings, or check --task-queue",
            err=True,
        )
    elif no_current_version(response):
        click.echo(
            f"warning: the workers of task queue {task_queue!r} are versioned and no version "
            f"is current; {what} waits until one is — run `istio-upgrade workers set-current "
            "--build-id <id>` (`istio-upgrade workers status` lists the versions)",
            err=True,
        )
