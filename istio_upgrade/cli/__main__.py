"""``python -m istio_upgrade.cli``: the same as the ``istio-upgrade`` command."""

from istio_upgrade.cli.main import main

main()
