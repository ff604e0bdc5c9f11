#!/usr/bin/env bash
# The browser the human-judge page test drives: Debian's chromium and chromium-driver (the W3C WebDriver server),
# installed with apt when missing. Run by `make test`; root or passwordless sudo is needed only to install.
set -euo pipefail
if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then
  exit 0
fi
if [ "$(id -u)" = 0 ]; then
  SUDO=()
elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
  SUDO=(sudo -n)
else
  echo "scripts/setup_browser.sh: chromium and chromium-driver are missing and cannot be installed without root;" >&2
  echo "  install them (apt-get install chromium chromium-driver) for tests/evaluate/test_human_judge.py" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update -qq
"${SUDO[@]}" apt-get install -y -qq chromium chromium-driver >/dev/null
chromium --version
