#!/usr/bin/env bash
# Installs a headless browser for the report test (tests/integration/report.rs):
# Debian's `chromium`. Does nothing when one is already there. Needs root and
# apt-get (as on CI's Debian machines); elsewhere it says what to do and exits 0,
# and the browser check then skips with a message (it fails when CI is set).
set -euo pipefail
for exe in "${MSNR_CHROMIUM:-}" chromium chromium-browser google-chrome; do
  [ -n "$exe" ] && command -v "$exe" >/dev/null 2>&1 && exit 0
done
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "tests/setup/chromium.sh: installing Debian's chromium for the report's browser test" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq chromium >&2
else
  echo "tests/setup/chromium.sh: no chromium and no root apt-get: install chromium (or set MSNR_CHROMIUM) for the report's browser test" >&2
fi
