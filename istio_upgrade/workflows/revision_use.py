"""Whether a revision is still in use: the check made before any control plane is removed.

Shared by the end of an upgrade and by ``IstioRevisionRemoval``. Deterministic: the reading is
done by the ``verify_revision_unused`` (Kubernetes) and ``query_revision_xds`` (Prometheus)
activities, in that order.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from istio_upgrade.activities.interface import query_revision_xds, verify_revision_unused
    from istio_upgrade.models.activities import RevisionInput
    from istio_upgrade.models.prometheus_auth import PrometheusAuth
    from istio_upgrade.models.spec import ClusterRef
    from istio_upgrade.workflows.prometheus_access import prometheus_auth
    from istio_upgrade.workflows.steps import run_step


async def revision_use(
    cluster: ClusterRef,
    revision: str,
    prometheus_url: str | None,
    auth: PrometheusAuth | None = None,
) -> tuple[list[str], list[str]]:
    """What still uses ``revision`` and what could not be checked: (blockers, warnings).

    Blockers are live pods it injected, namespaces labelled with it, tags pointing at it and
    proxies connected to its istiod (``pilot_xds``, when ``prometheus_url`` is given, asked
    with ``auth``).
    """
    unused = await run_step(
        verify_revision_unused,
        RevisionInput(cluster=cluster, revision=revision),
        summary=f"verify revision {revision} is unused",
    )
    blockers, warnings = list(unused.blockers), []
    if prometheus_url is None:
        warnings.append("no Prometheus URL: connected proxies (pilot_xds) were not checked")
        return blockers, warnings
    summary = f"proxies still connected to istiod-{revision}"
    # Prometheus, not the API server: the default policy's backoff, three attempts.
    retry = RetryPolicy(maximum_attempts=3)
    resolved = prometheus_auth(auth)
    xds = (
        await run_step(
            query_revision_xds,
            prometheus_url,
            revision,
            summary=summary,
            start_to_close=timedelta(seconds=30),
            retry=retry,
        )
        if resolved is None
        else await run_step(
            query_revision_xds,
            prometheus_url,
            revision,
            resolved,
            summary=summary,
            start_to_close=timedelta(seconds=30),
            retry=retry,
        )
    )
    if xds is None:
        warnings.append(f"no pilot_xds data for revision {revision}; relying on the pod check")
    elif xds:
        blockers.append(f"{xds:g} proxies still connected to istiod-{revision} (pilot_xds)")
    return blockers, warnings
