#!/usr/bin/env bash
# The browser tests drive Debian's Chromium, and Chinese needs a CJK font to render as text
# rather than empty boxes; their accessibility scan injects axe-core, taken from the npm registry
# at the version and digest pinned in tests/js/package-lock.json. Installs what is missing (the
# Debian packages as root); does nothing when all is present.
set -euo pipefail
missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
dpkg-query -W -f='${Status}' fonts-wqy-zenhei 2>/dev/null | grep -q "install ok installed" || missing+=(fonts-wqy-zenhei)
command -v npm >/dev/null || missing+=(npm)
axe() {
    [ -f tests/js/node_modules/axe-core/axe.min.js ] && return 0
    echo "Installing axe-core (pinned in tests/js/package-lock.json) for the accessibility scan"
    npm ci --prefix tests/js --no-audit --no-fund --loglevel=error >/dev/null
}
cd "$(dirname "$0")/.."
if [ ${#missing[@]} -eq 0 ]; then
    axe
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "The browser tests need Debian packages that are not installed: ${missing[*]}" >&2
    echo "Install them as root: apt-get install -y ${missing[*]}" >&2
    exit 1
fi
echo "Installing ${missing[*]} for the browser tests"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
axe
