#!/usr/bin/env bash
# Installs what the demo and the tests need on a fresh machine (run as root):
# debootstrap (builds the cached Asterisk 22 root when no asterisk is on PATH), venv with
# ensurepip (the installed-wheel test makes a fresh venv; Debian splits it into python3-venv),
# chromium + chromium-driver (the page's browser tests), postgresql (the PostgreSQL store's
# tests) and the package (selenium: [test]).
set -euo pipefail
cd "$(dirname "$0")/.."
apt_packages=()
if ! command -v asterisk >/dev/null 2>&1 && ! command -v debootstrap >/dev/null 2>&1; then
  apt_packages+=(debootstrap)
fi
if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
  apt_packages+=(python3-venv)
fi
# The Live Monitor page's browser tests: Debian's Chromium and its matching driver (Selenium
# is pointed at both, so it never downloads a browser or a driver).
if [[ ! -x /usr/bin/chromium ]]; then
  apt_packages+=(chromium)
fi
if [[ ! -x /usr/bin/chromedriver ]]; then
  apt_packages+=(chromium-driver)
fi
# The PostgreSQL store's tests run a throwaway server (tests/postgres_harness.py): Debian's
# server binaries (initdb, pg_ctl) under /usr/lib/postgresql/*/bin.
if ! compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null; then
  apt_packages+=(postgresql)
fi
if ((${#apt_packages[@]})); then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${apt_packages[@]}" >/dev/null
fi
python3 -m pip install -q -e '.[test,bench]'
