"""Retry policy of the Kubernetes activities, shared by every workflow of the package."""

from __future__ import annotations

from datetime import timedelta

from temporalio.common import RetryPolicy

NON_RETRYABLE_ERRORS = [
    "Forbidden",
    "InvalidObject",
    "InvalidManifest",
    "UnknownKind",
    "KubeconfigError",
    "NamespaceNotFound",
    "RevisionNotReady",
]
"""``ApplicationError`` types the activities raise when a retry cannot help."""

ACTIVITY_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=20),
    maximum_attempts=10,
    non_retryable_error_types=NON_RETRYABLE_ERRORS,
)
"""Transient failures (API server down, throttling beyond the in-activity retries) retried
for about two minutes before the step fails."""
