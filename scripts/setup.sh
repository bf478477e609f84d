#!/usr/bin/env bash
# Create .venv (once) and install graphnn into it, editable, with the extras given as $1
# (e.g. "dev,mpi,cu12"). Works on a fresh Debian where only python3 is installed (root).
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  # Debian's python3 ships without venv/ensurepip; install it when missing.
  if ! "$PY" -m venv --help >/dev/null 2>&1 || ! "$PY" -c "import ensurepip" >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq python3-venv python3-pip >/dev/null
  fi
  # System site-packages are visible, so what the machine already has is not downloaded again.
  "$PY" -m venv --system-site-packages .venv
fi
spec="."
[ -n "$extras" ] && spec=".[${extras}]"
.venv/bin/python -m pip install -q --disable-pip-version-check -e "$spec"
