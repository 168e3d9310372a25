#!/usr/bin/env bash
# The run command: installs what it needs, then runs the product end to end on a real
# Asterisk 22 sandbox (Ctrl-C to stop, or pass --seconds N).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec fastagi-spy demo "$@"
