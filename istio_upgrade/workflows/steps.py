"""One way to run an activity from a workflow: timeouts, heartbeats and retries in one place.

Every workflow of the package (``IstioCanaryUpgrade``, ``IstioRevisionRemoval`` and the shared
``revision_use`` check) schedules its activities through :func:`run_step`, by reference to the
stubs of :mod:`istio_upgrade.activities.interface`: mypy checks the argument against the
stub's parameter and the result takes the stub's return type, which is also the type the
pydantic data converter decodes the result into.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, TypeVar, overload

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError
from temporalio.workflow import ActivityCancellationType

with workflow.unsafe.imports_passed_through():
    from istio_upgrade.models.spec import ClusterRef
    from istio_upgrade.workflows.retries import ACTIVITY_RETRY

A = TypeVar("A")
B = TypeVar("B")
C = TypeVar("C")
R = TypeVar("R")

SHORT = timedelta(minutes=3)
"""Start-to-close timeout of a step that neither waits nor pages through a cluster."""

HEARTBEAT = timedelta(seconds=30)
"""Heartbeat timeout of a wait (``wait_seconds``): the wait heartbeats every few seconds."""

HEARTBEAT_PER_REQUEST = timedelta(minutes=2)
"""Heartbeat timeout of a step that heartbeats per page or namespace (``heartbeats``): one
request may block for a while (request timeout, throttling with Retry-After), yet a crashed
worker is still noticed in minutes."""

WAIT_CANCELLATION = "wait-cancellation-completed"
"""Patch: a cancelled step is over when its activity says so (``WAIT_CANCELLATION_COMPLETED``)."""

INTERRUPTIBLE_WAITS = "abort-interrupts-waits"
"""Patch: an abort (or a cancellation) stops a running forward wait at once; upgrades recorded
before it waited for the wait to end."""

CLUSTER_TASK_QUEUE = "cluster-task-queue"
"""Patch: a cluster's activities run on its ``ClusterRef.task_queue`` when one is set."""

WAIT_MARGIN_SECONDS = 120
"""What a wait's start-to-close timeout allows beyond the wait itself."""


@overload
async def run_step(
    fn: Callable[[A], Awaitable[R]],
    arg: A,
    /,
    *,
    summary: str,
    start_to_close: timedelta = SHORT,
    wait_seconds: float | None = None,
    heartbeats: bool = False,
    attempts: int | None = None,
    retry: RetryPolicy = ACTIVITY_RETRY,
    interrupt: Callable[[], BaseException | None] | None = None,
) -> R: ...


@overload
async def run_step(
    fn: Callable[[A], R],
    arg: A,
    /,
    *,
    summary: str,
    start_to_close: timedelta = SHORT,
    wait_seconds: float | None = None,
    heartbeats: bool = False,
    attempts: int | None = None,
    retry: RetryPolicy = ACTIVITY_RETRY,
    interrupt: Callable[[], BaseException | None] | None = None,
) -> R: ...


@overload
async def run_step(
    fn: Callable[[A, B], Awaitable[R]],
    arg: A,
    arg2: B,
    /,
    *,
    summary: str,
    start_to_close: timedelta = SHORT,
    wait_seconds: float | None = None,
    heartbeats: bool = False,
    attempts: int | None = None,
    retry: RetryPolicy = ACTIVITY_RETRY,
    interrupt: Callable[[], BaseException | None] | None = None,
) -> R: ...


@overload
async def run_step(
    fn: Callable[[A, B, C], Awaitable[R]],
    arg: A,
    arg2: B,
    arg3: C,
    /,
    *,
    summary: str,
    start_to_close: timedelta = SHORT,
    wait_seconds: float | None = None,
    heartbeats: bool = False,
    attempts: int | None = None,
    retry: RetryPolicy = ACTIVITY_RETRY,
    interrupt: Callable[[], BaseException | None] | None = None,
) -> R: ...


async def run_step(
    fn: Callable[..., Any],
    *args: Any,
    summary: str,
    start_to_close: timedelta = SHORT,
    wait_seconds: float | None = None,
    heartbeats: bool = False,
    attempts: int | None = None,
    retry: RetryPolicy = ACTIVITY_RETRY,
    interrupt: Callable[[], BaseException | None] | None = None,
) -> Any:
    """Run the activity ``fn`` (a stub of ``activities.interface``) with ``args``.

    Args:
        fn: The activity's stub; its registered name is scheduled, its return annotation is
            the result type.
        args: The activity's arguments (one input model, or those of ``query_revision_xds``).
        summary: The step's label in the Web UI's timeline.
        start_to_close: Start-to-close timeout of a step that does not wait.
        wait_seconds: The step waits up to this long (rollouts, readiness): start-to-close
            becomes the wait plus :data:`WAIT_MARGIN_SECONDS`, with a :data:`HEARTBEAT` timeout
            so that a crashed worker's attempt is retried before the wait runs out.
        heartbeats: The step heartbeats per request: :data:`HEARTBEAT_PER_REQUEST` timeout.
        attempts: Overrides ``retry``'s maximum attempts.
        retry: The retry policy (default: the Kubernetes activities' ``ACTIVITY_RETRY``).
        interrupt: For a wait: returns the error to stop with (an abort) once the wait must
            stop; the activity is then cancelled and the error raised once it has stopped.

    The step runs on the task queue of :func:`activity_task_queue` (patched): its cluster's
    queue when ``ClusterRef.task_queue`` is set, else the workflow's own.

    Every step is scheduled with ``WAIT_CANCELLATION_COMPLETED`` (patched): a cancelled step is over
    only when its activity says so, so an undo never starts while the step it undoes still
    runs (with the default ``TRY_CANCEL`` a forward install could finish after the rollback's
    uninstall).

    Returns:
        The activity's result, decoded into the stub's return type.
    """
    if attempts is not None:
        retry = dataclasses.replace(retry, maximum_attempts=attempts)
    queue = activity_task_queue(args)
    if queue is not None and not workflow.patched(CLUSTER_TASK_QUEUE):
        queue = None
    handle = workflow.start_activity(
        fn,
        args=list(args),
        start_to_close_timeout=(
            timedelta(seconds=wait_seconds + WAIT_MARGIN_SECONDS)
            if wait_seconds
            else start_to_close
        ),
        heartbeat_timeout=(
            HEARTBEAT if wait_seconds else HEARTBEAT_PER_REQUEST if heartbeats else None
        ),
        retry_policy=retry,
        summary=summary,
        task_queue=queue,
        # Upgrades recorded before resolved a cancelled step at once (TRY_CANCEL): replaying
        # them must schedule their undo where they did.
        cancellation_type=(
            ActivityCancellationType.WAIT_CANCELLATION_COMPLETED
            if workflow.patched(WAIT_CANCELLATION)
            else ActivityCancellationType.TRY_CANCEL
        ),
    )
    if interrupt is None:
        return await handle
    await workflow.wait_condition(lambda: handle.done() or interrupt() is not None)
    reason = interrupt()
    if handle.done() or reason is None:
        return await handle
    handle.cancel()
    try:
        await handle
    except ActivityError as error:
        # Cancelled as asked, or ended otherwise meanwhile (its worker died): either way the
        # step stopped, and the abort is why the upgrade stops.
        raise reason from error
    raise reason


def activity_task_queue(args: tuple[Any, ...]) -> str | None:
    """The task queue of a step with ``args``; None = the workflow's own queue.

    The rule, in order: the ``task_queue`` of the cluster (a ``ClusterRef``) the step's input
    is or names (``input.cluster``, ``input.spec.cluster``) — every Kubernetes activity's input
    does; else the queue the running workflow declares, as ``activity_task_queue`` on its
    instance, for its steps that name no cluster (the Prometheus ones, which take a URL:
    ``IstioCanaryUpgrade`` declares its spec's cluster queue). Workflows themselves always run
    on the main queue.
    """
    cluster = _cluster_of(args[0]) if args else None
    if cluster is not None:
        return cluster.task_queue
    declared = getattr(workflow.instance(), "activity_task_queue", None)
    return declared if isinstance(declared, str) and declared else None


def _cluster_of(arg: Any) -> ClusterRef | None:
    for candidate in (
        arg,
        getattr(arg, "cluster", None),
        getattr(getattr(arg, "spec", None), "cluster", None),
    ):
        if isinstance(candidate, ClusterRef):
            return candidate
    return None
