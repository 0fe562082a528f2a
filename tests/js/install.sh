#!/usr/bin/env bash
# Installs the JavaScript packages pinned in package-lock.json (the official `phoenix` client
# and `ws`) into tests/js/node_modules with `npm ci`. Idempotent: when node_modules already
# holds exactly this lockfile's install, it returns at once without touching the network.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")"

for tool in node npm; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "install.sh: '$tool' is not installed. Install Node.js 20 or newer with npm," >&2
        echo "  for example 'apt-get install nodejs npm' on Debian/Ubuntu, or from nodejs.org." >&2
        exit 127
    fi
done

stamp=node_modules/.phx-install-stamp
want="$(cat package.json package-lock.json | sha256sum | cut -d' ' -f1) node-$(node --version)"

installed() {
    [[ -f $stamp && "$(cat "$stamp")" == "$want" ]]
}

if installed; then
    exit 0
fi

# Two test processes may get here at once; npm ci deletes node_modules first, so serialise.
if command -v flock >/dev/null 2>&1; then
    exec 9>.install.lock
    flock 9
    if installed; then
        exit 0
    fi
fi

npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
printf '%s\n' "$want" >"$stamp"
