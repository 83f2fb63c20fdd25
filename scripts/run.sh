#!/bin/bash
# Set up (once) and run ipydoc in the foreground: `sudo bash scripts/run.sh [CONFIG]`.
set -euo pipefail
cd "$(dirname "$0")/.."
CONFIG=${1:-etc/ipydoc.toml}
bash scripts/bootstrap.sh "$CONFIG"
echo "==> starting ipydoc on the address in $CONFIG (Ctrl-C stops it; user servers keep running)"
# `ipydoc serve`: the daemon in a worker under a small supervisor, so `ipydoc restart`
# replaces it with no failed request (docs/upgrades.md). `twistd -n ipydoc` also runs it.
exec .venv/bin/ipydoc serve --config "$CONFIG"
