"""Every side effect of an upgrade, as Temporal activities.

Import-light on purpose: the workflows import :mod:`istio_upgrade.activities.interface` (typed
stubs, no implementation) from inside the workflow sandbox, so this package must not pull in
``kubernetes`` or ``httpx``. The implementations (``kube.py``, ``prometheus.py``, ``fleet.py``,
``notify.py`` and the modules behind them) are imported by the worker only.
"""
