"""How a run continues as new under Worker Versioning (see :mod:`istio_upgrade.versioning`).

Every workflow here is ``PINNED`` on a versioned worker: a run finishes on the worker version
that started it. The behaviour is the worker's default (``VersioningSettings.deployment_config``),
not ``@workflow.defn(versioning_behavior=...)``: the server refuses a workflow task completion
that names a behaviour from an unversioned worker ("versioning behavior cannot be specified
without deployment options being set with versioned mode"), and ``WORKER_VERSIONING=off``
must keep working. A
long one moves to the current version only at a continue-as-new boundary, where its state is
a ``Carryover`` (a contract both versions read) rather than a history only the old code can
replay. Two things make that happen, both under the patch ``UPGRADE_ON_CONTINUE``:

- the next run starts ``AUTO_UPGRADE`` (``ContinueAsNewVersioningBehavior``), i.e. on the
  task queue's current version, and is pinned there by its first task;
- when the server says a newer version became current (``is_target_worker_deployment_version
  _changed``, recorded in the workflow task's started event, so replay sees the same answer),
  the run continues as new at its next boundary instead of waiting for the history limit.

Unversioned workers ignore both (the server sends no such flag; the next run inherits nothing).
"""

from __future__ import annotations

from temporalio import workflow

UPGRADE_ON_CONTINUE = "upgrade-on-continue-as-new"
"""Patch: a continued run starts on the current worker version; a new current version makes
the run continue as new at its next boundary."""


def newer_version_current() -> bool:
    """Whether a newer worker version became current since this run started.

    The patch is asked only when the flag is set, so older histories (which never carry it)
    replay without a new marker.
    """
    return workflow.info().is_target_worker_deployment_version_changed() and workflow.patched(
        UPGRADE_ON_CONTINUE
    )


def next_run_behavior() -> workflow.ContinueAsNewVersioningBehavior | None:
    """The ``initial_versioning_behavior`` of a continue-as-new: start on the current version.

    None (inherit the pinned version, the SDK's default) when replaying a run that continued
    before the patch.
    """
    if workflow.patched(UPGRADE_ON_CONTINUE):
        return workflow.ContinueAsNewVersioningBehavior.AUTO_UPGRADE
    return None
