#!/usr/bin/env bash
# The test command: installs what it needs, lints, type-checks, then runs every test,
# including the integration suite against a real Asterisk 22 (which must start, never skip).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
ruff check .
mypy
python3 -m pytest -q -p no:cacheprovider "$@"
