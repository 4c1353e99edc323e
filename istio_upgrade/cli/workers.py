"""Whether a worker polls the task queue: without one, a started upgrade waits silently."""

from __future__ import annotations

import click
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client
from temporalio.service import RPCError


async def has_workers(client: Client, task_queue: str) -> bool | None:
    """Whether any worker polled ``task_queue`` for workflow tasks recently; None if unknown."""
    request = DescribeTaskQueueRequest(
        namespace=client.namespace,
        task_queue=TaskQueue(name=task_queue),
        task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
    )
    try:
        response = await client.workflow_service.describe_task_queue(request)
    except RPCError:
        # Permissions or an older server: the check is advice, never a reason to fail.
        return None
    return len(response.pollers) > 0


async def warn_without_workers(client: Client, task_queue: str, what: str) -> None:
    """Tell the operator on stderr when nothing will pick ``what`` up."""
    if await has_workers(client, task_queue) is False:
        click.echo(
            f"warning: no worker polls task queue {task_queue!r} in namespace "
            f"{client.namespace!r}; {what} waits until one does — run `istio-upgrade worker` "
            "with the same TEMPORAL_* settings, or check --task-queue",
            err=True,
        )
