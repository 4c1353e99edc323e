"""The sandbox's Kubernetes REST API server (aiohttp), faithful enough for kubectl and clients."""

from istio_sandbox.api.admin import CLUSTER_KEY
from istio_sandbox.api.app import build_app
from istio_sandbox.api.selectors import (
    Selector,
    SelectorError,
    match_label_selector,
    parse_selector,
)

__all__ = [
    "CLUSTER_KEY",
    "Selector",
    "SelectorError",
    "build_app",
    "match_label_selector",
    "parse_selector",
]
