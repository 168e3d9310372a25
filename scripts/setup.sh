#!/usr/bin/env bash
# Installs what the demo and the tests need on a fresh machine (run as root):
# debootstrap (builds the cached Asterisk 22 root when no asterisk is on PATH) and the package.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v asterisk >/dev/null 2>&1 && ! command -v debootstrap >/dev/null 2>&1; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
fi
python3 -m pip install -q -e '.[test,bench]'
