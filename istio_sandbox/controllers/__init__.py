"""The sandbox's controllers: workloads, pod lifecycle, Events, logs, Istio injection, istiod.

``Controllers(cluster)`` runs them on the asyncio loop that serves the API; ``pod_log`` answers
``pods/{name}/log``; ``revision_ready``/``revision_version`` describe an installed revision.
"""

from istio_sandbox.controllers.injector import SidecarInjector, route
from istio_sandbox.controllers.istiod import revision_ready, revision_version
from istio_sandbox.controllers.logs import BadRequest, pod_log
from istio_sandbox.controllers.manager import Controllers
from istio_sandbox.system import NODES

__all__ = [
    "NODES",
    "BadRequest",
    "Controllers",
    "SidecarInjector",
    "pod_log",
    "revision_ready",
    "revision_version",
    "route",
]
