#!/usr/bin/env bash
# Set everything up, then lint, type-check and run the whole test suite.
# Extra arguments go to pytest, e.g. `scripts/test.sh -k gate -x`.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"

ruff check .
ruff format --check .
mypy istio_upgrade istio_sandbox
lint-imports

status=0
python -m pytest "$@" || status=$?
if [ "$status" -eq 5 ]; then
  echo "error: pytest collected no tests (exit code 5); a test run that tests nothing fails" >&2
fi
exit "$status"
