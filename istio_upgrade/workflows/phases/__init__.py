"""The phases of ``IstioCanaryUpgrade``, one module each, in the order an upgrade runs them.

``discover`` (read the cluster, plan, precheck) → ``lock`` (one upgrade per cluster) →
``install`` (the target revision beside the old one) → ``migrate`` (per batch: relabel,
restart, settle) → ``soak`` (the safety gate) → ``handover`` (continue as new between
batches) → ``promote`` (move the revision tags) → ``cleanup`` (grace period, remove the old
revision if unused); ``rollback`` runs the compensation stack when any of them fails.

Each phase is a function of the run's :class:`~istio_upgrade.workflows.state.UpgradeState`
and the spec and plan; ``workflows/upgrade.py`` strings them together. Deterministic code
only; every activity is called by reference through ``workflows.steps.run_step``.
"""
