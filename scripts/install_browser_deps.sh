#!/bin/sh
# What the browser end-to-end test (tests/test_app_browser.py) needs, installed once:
#   - Debian's chromium at /usr/bin/chromium (apt), and node/npm if missing (apt);
#   - playwright-core, pinned by tests/browser/package-lock.json (npm ci). No Playwright browser
#     download: the test drives the system chromium through executablePath.
# Idempotent: does nothing when everything is there. Run as root on a fresh Debian machine, or as a
# user with sudo. Only the Debian and npm package registries need to be reachable.
set -eu

cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo"
fi

apt_packages=""
[ -x /usr/bin/chromium ] || apt_packages="$apt_packages chromium"
command -v node >/dev/null 2>&1 || apt_packages="$apt_packages nodejs"
command -v npm >/dev/null 2>&1 || apt_packages="$apt_packages npm"

if [ -n "$apt_packages" ]; then
  echo "install_browser_deps: apt-get install$apt_packages"
  $SUDO apt-get update
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y $apt_packages
fi

if [ ! -d tests/browser/node_modules/playwright-core ]; then
  echo "install_browser_deps: npm ci in tests/browser"
  (cd tests/browser && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund)
fi

/usr/bin/chromium --version 2>/dev/null || true
echo "install_browser_deps: ok (node $(node --version), playwright-core $(node -p "require('./tests/browser/node_modules/playwright-core/package.json').version"))"
