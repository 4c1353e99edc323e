"""``istio-upgrade unlock``: release a cluster lock that an upgrade kept on purpose.

An upgrade whose rollback is incomplete keeps the lock (``istio-system/istio-upgrade-lock``)
so that no new upgrade starts on a cluster that needs a person. Once someone has repaired it,
this command shows who holds the lock, refuses while that upgrade still runs, asks for
confirmation and deletes the lock — only if it still names the same holder.

It talks to the cluster with the operator's own kubeconfig (as ``kubectl`` would), not
through a worker: unlocking is a person's decision, made with a person's credentials.
"""

from __future__ import annotations

from typing import Any

import click

from istio_upgrade.cli.errors import CommandError, run
from istio_upgrade.cli.exit_codes import ExitCode


def holder_workflow_id(holder: str) -> str:
    """The workflow id of a lock holder (``<workflow id>@<first run id>``, or a bare id)."""
    return holder.split("@", 1)[0]


async def _holder_runs(opts: Any, holder: str) -> bool:
    from temporalio.client import WorkflowExecutionStatus
    from temporalio.service import RPCError, RPCStatusCode

    from istio_upgrade.cli.main import _client

    try:
        client = await _client(opts)
    except RuntimeError as error:
        raise CommandError(
            f"cannot ask Temporal whether {holder} still runs ({error}); check --address",
            ExitCode.UNAVAILABLE,
        ) from error
    workflow_id, _, first_run_id = holder.partition("@")
    try:
        description = await client.get_workflow_handle(workflow_id).describe()
    except RPCError as error:
        if error.status == RPCStatusCode.NOT_FOUND:
            return False
        raise CommandError(
            f"cannot ask Temporal whether {holder} still runs ({error.message})",
            ExitCode.UNAVAILABLE,
        ) from error
    # The latest run of the id; it is the holder only if it belongs to the holder's run chain
    # (a failed upgrade started again under the same id is another upgrade).
    latest_chain = description.raw_description.workflow_execution_info.first_run_id
    if first_run_id and latest_chain != first_run_id:
        return False
    return bool(description.status == WorkflowExecutionStatus.RUNNING)


@click.command()
@click.option("--cluster", required=True, help="Cluster name, as in the upgrade spec.")
@click.option("--context", help="kubeconfig context of the cluster (as in the upgrade spec).")
@click.option("--kubeconfig", help="kubeconfig file; default KUBECONFIG or ~/.kube/config.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_obj
def unlock(opts: Any, cluster: str, context: str | None, kubeconfig: str | None, yes: bool) -> None:
    """Release the cluster lock kept after an incomplete rollback, once the cluster is repaired.

    Exit 0 when released (or no lock exists), 7 when the holder still runs or the lock changed
    meanwhile, 6 when Temporal cannot say whether the holder runs.
    """
    from istio_upgrade.activities import lock
    from istio_upgrade.activities.kube_client import KubeClients
    from istio_upgrade.models.spec import ClusterRef

    kube = KubeClients(kubeconfig).for_cluster(ClusterRef(name=cluster, context=context))
    current = lock.lock_object(kube)
    if current is None:
        click.echo(f"cluster {cluster} is not locked")
        return
    data = current.get("data") or {}
    holder = str(data.get("holder") or "")
    click.echo(f"cluster {cluster} is locked by {holder or '(nobody)'} since {data.get('since')}")
    if holder and run(_holder_runs(opts, holder)):
        raise CommandError(
            f"upgrade {holder_workflow_id(holder)} still runs and holds the lock; it releases "
            "the lock itself when it ends — abort it instead of unlocking",
            ExitCode.REJECTED,
        )
    if not yes:
        click.confirm(
            "Release it? Do so only once every namespace is on one revision again", abort=True
        )
    if not lock.release_exactly(kube, current):
        raise CommandError(
            "the lock changed since it was read (another upgrade took it?); run unlock again",
            ExitCode.REJECTED,
        )
    click.echo(f"lock released; cluster {cluster} accepts upgrades again")
