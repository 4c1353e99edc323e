#!/usr/bin/env bash
# Quick start: set everything up, then run the end-to-end demo (extra args go to the demo).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
exec istio-upgrade demo "$@"
