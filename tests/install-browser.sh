#!/usr/bin/env bash
# The browser tests drive Debian's Chromium, and Chinese needs a CJK font to render as text
# rather than empty boxes. Installs both when missing (as root); does nothing when present.
set -euo pipefail
missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
dpkg-query -W -f='${Status}' fonts-wqy-zenhei 2>/dev/null | grep -q "install ok installed" || missing+=(fonts-wqy-zenhei)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
    echo "The browser tests need Debian packages that are not installed: ${missing[*]}" >&2
    echo "Install them as root: apt-get install -y ${missing[*]}" >&2
    exit 1
fi
echo "Installing ${missing[*]} for the browser tests"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
