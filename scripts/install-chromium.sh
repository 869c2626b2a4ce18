#!/usr/bin/env bash
# Installs Debian's chromium for the catalog's headless browser test
# (event-build/tests/catalog_browser.rs), if it is missing. Idempotent: does nothing when
# /usr/bin/chromium (or `chromium` on PATH) is already there. Needs root or passwordless sudo
# and apt-get; without them it prints a warning and exits 0 (the test then skips, or fails
# under CI).
set -euo pipefail

if command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ]; then
  exit 0
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    sudo="sudo -n"
  else
    echo "warning: chromium is missing and cannot be installed (needs root or passwordless sudo)" >&2
    exit 0
  fi
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "warning: chromium is missing and apt-get is not available" >&2
  exit 0
fi
echo "installing chromium (apt-get)" >&2
if ! $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 \
  || ! $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    chromium >&2; then
  echo "warning: apt-get could not install chromium" >&2
fi
