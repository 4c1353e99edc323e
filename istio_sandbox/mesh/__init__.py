"""Mesh traffic and Istio metrics of the sandbox."""

from istio_sandbox.mesh.exposition import CONTENT_TYPE
from istio_sandbox.mesh.model import Mesh
from istio_sandbox.mesh.pods import PodIndex, PodInfo
from istio_sandbox.mesh.traffic import BUCKETS_MS, REQUEST_LABELS, TrafficModel

__all__ = [
    "BUCKETS_MS",
    "CONTENT_TYPE",
    "REQUEST_LABELS",
    "Mesh",
    "PodIndex",
    "PodInfo",
    "TrafficModel",
]
