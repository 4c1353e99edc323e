"""Deterministic workflow code: the upgrade workflow, planning and the gate decision."""

from istio_upgrade.workflows.upgrade import TASK_QUEUE, WORKFLOW_NAME, IstioCanaryUpgrade

__all__ = ["TASK_QUEUE", "WORKFLOW_NAME", "IstioCanaryUpgrade"]
