#!/usr/bin/env bash
# Everything for the demo on a fresh Debian machine: graphviz's dot, the package, then the tour.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v dot >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq --no-install-recommends graphviz >/dev/null
fi
bash scripts/setup.sh
exec .venv/bin/graphnn demo "$@"
