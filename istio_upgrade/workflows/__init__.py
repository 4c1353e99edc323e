"""Deterministic workflow code: the upgrade and removal workflows, their phases, planning and
the gate decision.

``upgrade.py`` strings together the phases of ``phases/`` over the run's ``state.py``;
``compensation.py`` is the rollback stack; ``steps.py`` runs every activity (by reference to
the stubs of ``istio_upgrade.activities.interface``) with its timeouts and retry policy.
"""

from istio_upgrade.workflows.upgrade import TASK_QUEUE, WORKFLOW_NAME, IstioCanaryUpgrade

__all__ = ["TASK_QUEUE", "WORKFLOW_NAME", "IstioCanaryUpgrade"]
